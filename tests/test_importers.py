"""Released weights into the specs: the importers' mappings reproduce the original implementations' outputs (from
fixtures that benchmarks/original_fixtures.py made with the original code), and weights that do not fit are refused."""

import json

import pytest
import torch
from safetensors import safe_open

import arblocks
from arblocks.cli import main
from arblocks.weights.importer import WeightImportError, import_weights, port_mixture_order
from tests.originals import FIXTURES, small_lmconv, small_pixelcnn_pp


def expected(name: str):
    with safe_open(str(FIXTURES / name / "expected.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["config"])


def pixelcnn_pp_spec(config: dict):
    return arblocks.parse_spec(small_pixelcnn_pp(config["nr_resnet"], config["nr_filters"], config["nr_logistic_mix"],
                                                 config["channels"], config["size"]))


@pytest.mark.parametrize("name", ["pixelcnn_pp_rgb", "pixelcnn_pp_gray"])
def test_pclucas14_pixelcnn_pp_weights_give_the_originals_outputs(name):
    tensors, config = expected(name)
    model = import_weights("pixelcnn_pp_pytorch", FIXTURES / name / "model.pth", pixelcnn_pp_spec(config))
    images = tensors["images"].long()
    with torch.no_grad():
        params = model(images)
    order = torch.tensor(port_mixture_order(config["channels"], config["nr_logistic_mix"]))
    assert torch.allclose(params, tensors["outputs"][:, order], atol=1e-5, rtol=0)
    loss = model.nll(images).sum()  # the same likelihood; the port falls back to the density where a bin's mass is below 1e-5
    assert torch.allclose(loss, tensors["loss"][0], rtol=1e-5)


@pytest.mark.parametrize("name", ["lmconv_rgb_s_curve", "lmconv_gray_hilbert", "lmconv_binary_s_curve"])
def test_lmconv_weights_give_the_originals_outputs(name):
    """The importer comes with the arblocks-lmconv plugin (through the importer hook, as a third party's would)."""
    pytest.importorskip("arblocks_lmconv")
    tensors, config = expected(name)
    binary = config["nr_logistic_mix"] is None
    spec = arblocks.parse_spec(small_lmconv(config["nr_resnet"], config["nr_filters"], config["nr_logistic_mix"], config["channels"],
                                            config["size"], config["arblocks_order"], bits=1 if binary else 8))
    model = import_weights("lmconv", FIXTURES / name / "model.pth", spec)
    images = tensors["images"].long()
    with torch.no_grad():
        params = model(images)
    order = list(range(2)) if binary else port_mixture_order(config["channels"], config["nr_logistic_mix"])
    assert torch.allclose(params.reshape(tensors["outputs"].shape), tensors["outputs"][:, order], atol=1e-5, rtol=0)
    assert torch.allclose(model.nll(images).sum(), tensors["loss"][0], rtol=1e-5)


def write_spec(tmp_path, config) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small_pixelcnn_pp(config["nr_resnet"], config["nr_filters"], config["nr_logistic_mix"], config["channels"], config["size"])))
    return str(path)


def test_arblocks_import_writes_a_checkpoint_that_eval_and_export_take(tmp_path, capsys):
    tensors, config = expected("pixelcnn_pp_gray")
    ckpt = tmp_path / "imported.pt"
    assert main(["import", "pixelcnn_pp_pytorch", str(FIXTURES / "pixelcnn_pp_gray" / "model.pth"), "--spec", write_spec(tmp_path, config),
                 "--out", str(ckpt)]) == 0
    assert "imported" in capsys.readouterr().out
    model, _ = arblocks.load_checkpoint(ckpt)
    assert torch.allclose(model.nll(tensors["images"].long()).sum(), tensors["loss"][0], rtol=1e-5)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "folder")]) == 0
    assert arblocks.from_pretrained(tmp_path / "folder").num_parameters() == model.num_parameters()


def damaged(tmp_path, change) -> str:
    state = torch.load(FIXTURES / "pixelcnn_pp_gray" / "model.pth", weights_only=True)
    change(state)
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    return str(path)


class Payload:
    def __reduce__(self):
        return (print, ("this ran on loading",))


@pytest.mark.parametrize("change, said", [
    (lambda s: s.pop("nin_out.lin_a.bias"), "missing in the source: nin_out.lin_a.bias"),
    (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "in the source but not mapped to the spec: extra.weight"),
    (lambda s: s.__setitem__("u_init.conv.bias", torch.zeros(5)), "wrong shape: u_init.conv.bias (5,) (the spec needs (6,))"),
    (lambda s: s.__setitem__("u_init.conv.weight_v", torch.zeros(6, 2, 2, 2)), "u_init.conv.weight_v (6, 2, 2, 2) (the spec's layers.1.conv needs (6, 2, 2, 3))"),
    (lambda s: s.update({k.replace("down_layers.2.", "down_layers.2.x"): s.pop(k) for k in [k for k in s if k.startswith("down_layers.2.u_stream.1.")]}),
     "in the source but not mapped"),
    (lambda s: s.__setitem__("payload", Payload()), "refused: it holds objects other than tensors"),
])
def test_weights_that_do_not_fit_the_spec_are_refused_with_exit_2(tmp_path, capsys, change, said):
    _, config = expected("pixelcnn_pp_gray")
    source = damaged(tmp_path, change)
    assert main(["import", "pixelcnn_pp_pytorch", source, "--spec", write_spec(tmp_path, config), "--out", str(tmp_path / "c.pt")]) == 2
    out = capsys.readouterr()
    assert said in out.err and "Traceback" not in out.err and "this ran on loading" not in out.out + out.err
    assert not (tmp_path / "c.pt").exists()


def test_a_spec_of_another_depth_is_named_as_such(tmp_path, capsys):
    _, config = expected("pixelcnn_pp_gray")
    deeper = {**config, "nr_resnet": 2}
    with pytest.raises(WeightImportError, match="the checkpoint's nr_resnet is 1"):
        import_weights("pixelcnn_pp_pytorch", FIXTURES / "pixelcnn_pp_gray" / "model.pth", pixelcnn_pp_spec(deeper))
    assert main(["import", "no_such_format", "x.pth", "--spec", write_spec(tmp_path, config), "--out", str(tmp_path / "c.pt")]) == 2
    assert "registered formats are" in capsys.readouterr().err


def assert_gives_the_originals_mixture(model, tensors, config):
    """The imported model's mixture parameters (in the original's order) and summed loss are the fixture's; returns them."""
    images = tensors["images"].long()
    with torch.no_grad():
        params = model(images)
    order = torch.tensor(port_mixture_order(3, config["nr_logistic_mix"]))
    assert torch.allclose(params, tensors["outputs"][:, order], atol=1e-5, rtol=0)
    assert torch.allclose(model.nll(images).sum(), tensors["loss"][0], rtol=1e-5)
    return params


def test_the_tensorflow_originals_checkpoint_gives_its_outputs_without_tensorflow():
    """openai/pixel-cnn ran under TF2's v1 layer to write this checkpoint (its own Saver: raw weights, Polyak averages
    that differ from them, Adam slots); the reader needs no TensorFlow, and the EMA model reproduces its outputs."""
    tensors, config = expected("pixelcnn_pp_tf")
    spec = pixelcnn_pp_spec(config)
    model = import_weights("pixelcnn_pp_tf", FIXTURES / "pixelcnn_pp_tf" / "model.ckpt", spec)
    params = assert_gives_the_originals_mixture(model, tensors, config)
    images = tensors["images"].long()
    raw = import_weights("pixelcnn_pp_tf", FIXTURES / "pixelcnn_pp_tf" / "model.ckpt.index", spec, weights="raw")
    with torch.no_grad():
        assert not torch.allclose(raw(images), params, atol=1e-3)  # the raw weights are another model


def test_the_tensorflow_reader_reads_every_variable_as_tensorflow_wrote_it():
    from arblocks.weights.tf_checkpoint import read_tf_checkpoint, snappy_decompress

    tensors = read_tf_checkpoint(FIXTURES / "pixelcnn_pp_tf")  # a folder with one checkpoint
    assert len(tensors) == 685 and tensors["model/conv2d_0/V"].shape == (2, 3, 4, 4) and tensors["model/conv2d_0/V"].dtype == torch.float32
    assert "model/dense_0/g/ExponentialMovingAverage" in tensors
    # Snappy blocks (TensorFlow compresses an index block when that saves an eighth): a literal, then an overlapping copy
    assert snappy_decompress(bytes([9, 0x08]) + b"abc" + bytes([0x09, 3])) == b"abcabcabc"
    with pytest.raises(arblocks.ArblocksError, match="no table magic"):
        bad = FIXTURES.parent / "specs" / "tiny_digits.json"
        from arblocks.weights.tf_checkpoint import read_index

        read_index(bad)


def test_image_gpts_original_checkpoint_and_palette_give_its_logits(tmp_path):
    from tests.originals import small_image_gpt

    tensors, config = expected("image_gpt_tf")
    spec = arblocks.parse_spec(small_image_gpt(config["n_layer"], config["n_embd"], config["n_head"], config["n_vocab"], config["n_px"]))
    ckpt = tmp_path / "igpt.pt"
    model = import_weights("image_gpt_tf", FIXTURES / "image_gpt_tf" / "model.ckpt", spec, out=ckpt,
                           palette=FIXTURES / "image_gpt_tf" / "kmeans_centers.npy")
    tokens = tensors["tokens"].long()
    with torch.no_grad():
        logits = model(tokens)  # [B, vocab, 1, H, W] or [B, vocab, H, W]
    logits = logits.reshape(len(tokens), config["n_vocab"], -1).transpose(1, 2)  # raster positions, as the original's sequence
    assert torch.allclose(logits, tensors["logits"], atol=1e-5, rtol=0)
    mean_nll = model.nll(tokens).sum() / tokens.numel()  # the original's loss: mean cross-entropy per token
    assert torch.allclose(mean_nll, tensors["loss"][0], rtol=1e-5)
    _, info = arblocks.load_checkpoint(ckpt)
    import numpy as np

    clusters = torch.from_numpy(np.load(FIXTURES / "image_gpt_tf" / "kmeans_centers.npy"))
    assert torch.allclose(info["palette"], 127.5 * (clusters + 1))
    layer_norm = small_image_gpt(config["n_layer"], config["n_embd"], config["n_head"], config["n_vocab"], config["n_px"])
    layer_norm["defaults"]["transformer_block"]["normalization"] = "layer"
    with pytest.raises(WeightImportError, match="RMS norms"):
        import_weights("image_gpt_tf", FIXTURES / "image_gpt_tf" / "model.ckpt", arblocks.parse_spec(layer_norm))


def test_pixelsnails_original_checkpoint_gives_its_outputs():
    """neocxi/pixelsnail-public's h12_noup_smallkey model (at 2 attention rounds of width 8) under TF2's v1 layer."""
    from tests.originals import small_pixelsnail

    tensors, config = expected("pixelsnail_tf")
    spec = arblocks.parse_spec(small_pixelsnail(config["nr_resnet"], config["nr_filters"], config["attn_rep"], config["nr_logistic_mix"], config["size"]))
    model = arblocks.import_weights("pixelsnail_tf", FIXTURES / "pixelsnail_tf" / "model.ckpt", spec)  # the top-level API
    assert_gives_the_originals_mixture(model, tensors, config)

    two_channels = small_pixelsnail(config["nr_resnet"], config["nr_filters"], config["attn_rep"], config["nr_logistic_mix"], config["size"])
    two_channels["inputs"]["background"]["copies"] = 1  # a background of 2 channels, not the original's 6
    with pytest.raises(WeightImportError, match="shape"):
        import_weights("pixelsnail_tf", FIXTURES / "pixelsnail_tf" / "model.ckpt", arblocks.parse_spec(two_channels))
