"""PixelCNN with auxiliary variables: the shipped specs, the conditioning-network blocks, and a spec with
stages trained, evaluated and sampled from the command line."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from arblocks.cli import main
from arblocks.core.builder import build_model
from arblocks.core.validate import parse_spec
from arblocks.sampling.sample import sample_images
from arblocks.spec.errors import SpecError
from arblocks.spec.reading import read_spec_file
from arblocks.staged.stages import StagedModel, build_any, build_staged, parse_any, parse_staged
from arblocks.training.checkpoint import load_model

ROOT = Path(__file__).resolve().parent.parent
PYRAMID = Path(__file__).parent / "specs/tiny_aux_pyramid.json"


def staged(path, **changes) -> StagedModel:
    data = json.loads(Path(path).read_text())
    data["image"].update(changes)
    return build_staged(parse_staged(data))


@pytest.mark.parametrize("name, stages, total", [
    ("pixelcnn_aux_grayscale", [1_870_060, 3_903_700], 5_773_760),
    ("pixelcnn_aux_pyramid", [1_879_400, 3_995_700, 3_995_700], 9_870_800),
])
def test_shipped_specs_have_the_documented_parameter_counts(name, stages, total):
    model = build_any(parse_any(read_spec_file(ROOT / f"specs/{name}.json")), device="meta")
    assert [stage.num_parameters() for stage in model.stages] == stages and model.num_parameters() == total
    # every gated resnet of a conditioned stage reads the 100-channel conditioning map through its 1x1 auxiliary input
    last = model.stages[-1]
    assert last.inputs[model.names[-2]].info.height == (32 if name.endswith("grayscale") else 16)
    resnets = [layer for layer in last.layers if type(layer).__name__ == "GatedResnet" and layer.config.conv != "centred"]
    assert len(resnets) == 6 and all(r.nin_aux is not None for r in resnets)


@pytest.mark.parametrize("name", ["pixelcnn_aux_grayscale_small", "pixelcnn_aux_pyramid_small"])
def test_small_variants_sample_exactly_stage_by_stage(name):
    torch.manual_seed(0)
    model = staged(ROOT / f"specs/{name}.json", height=8, width=8).double().eval()
    cached = model.sample(2, engine="cached", generator=torch.Generator().manual_seed(3))
    naive = model.sample(2, engine="naive", generator=torch.Generator().manual_seed(3))
    assert torch.equal(cached, naive) and cached.shape == (2, 3, 8, 8)


def test_a_completion_keeps_the_known_pixels_at_every_stage():
    torch.manual_seed(0)
    model = staged(PYRAMID).eval()
    known = torch.randint(0, 16, (1, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:3] = True  # rows 0-2: the 4x4 level's row 0 is known (its 2x2 blocks), row 1 is not (it needs image row 3)
    assert model.views[0].known_pixels(mask).tolist() == [[True] * 4] + [[False] * 4] * 3
    images = model.sample(3, known=known, known_mask=mask, generator=torch.Generator().manual_seed(2))
    assert torch.equal(images[:, :, :3], known[:, :, :3].expand(3, -1, -1, -1))
    assert not torch.equal(images[:, :, 3:], known[:, :, 3:].expand(3, -1, -1, -1))


@pytest.mark.slow
def test_train_eval_and_sample_a_spec_with_stages_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(PYRAMID), "--data", "digits", "--out", str(run), "--steps", "4", "--batch-size", "8", "--eval-every", "4",
                 "--eval-batch-size", "500", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stage 'low' (downsample)" in out and "stage 'image' (identity)" in out

    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    stages = {s["stage"]: s for s in report["stages"]}
    assert report["bits_per_dim"] == pytest.approx(sum(s["bits_per_image_dim"] for s in stages.values()), rel=1e-9)
    assert report["nats_per_image"] == pytest.approx(sum(s["nats_per_image"] for s in stages.values()), rel=1e-9)
    assert stages["low"]["bits_per_dim_own"] == pytest.approx(stages["low"]["nats_per_image"] / (16 * math.log(2)))
    # the figures are the model's: the checkpoint's staged model gives the same nats on the test images
    model, _ = load_model(run / "checkpoint.pt")
    from arblocks.data import load_data

    test = load_data("digits", "test", model.image)
    with torch.no_grad():
        assert float(model.nll(test.images).double().mean()) == pytest.approx(report["nats_per_image"], rel=1e-5)
    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits"]) == 0
    assert "the sum of the stages" in capsys.readouterr().out

    known = tmp_path / "known.png"
    from arblocks.sampling.grid import save_grid

    save_grid(test.images[:1], known, 16, pad=0, scale=1)
    for extra in ([], ["--complete", str(known), "--rows", "4"], ["--engine", "naive"]):
        assert main(["sample", str(run / "checkpoint.pt"), "-n", "2", "--out", str(tmp_path / "s.png"), "--no-progress", *extra]) == 0, extra
        assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.slow
def test_training_a_spec_with_stages_resumes_exactly(tmp_path):
    from arblocks.training.loop import TrainConfig, train

    spec = parse_any(read_spec_file(PYRAMID))
    config = dict(batch_size=8, eval_every=100, checkpoint_every=2, log_every=1)
    straight = train(spec, "digits", tmp_path / "a", TrainConfig(steps=4, **config), progress=False)
    train(spec, "digits", tmp_path / "b", TrainConfig(steps=2, **config), progress=False)
    resumed = train(spec, "digits", tmp_path / "b", TrainConfig(steps=4, **config), resume=True, progress=False)
    assert resumed.test_bits_per_dim == straight.test_bits_per_dim and resumed.test_stages == straight.test_stages
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True)["model"] for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_deconv_doubles_the_size_like_a_same_padded_transposed_convolution():
    spec = parse_spec({"name": "d", "image": {"channels": 1, "height": 4, "width": 4, "bits": 1},
                       "inputs": {"m": {"type": "conditioning_map", "channels": 2, "factor": 2}},
                       "body": [{"type": "deconv", "in": "m", "out": "c", "channels": 3},
                                {"type": "masked_conv", "in": "x", "out": "h", "mask": "A", "channels": 3},
                                {"type": "add", "in": ["h", "c"], "out": "h"}],
                       "head": {"type": "bernoulli", "in": "h"}})
    model = build_model(spec)
    deconv = model.layers[0]
    m = torch.randn(2, 2, 2, 2)
    expected = F.conv_transpose2d(m, deconv.conv.weight(), deconv.conv.conv.bias, stride=2, padding=1, output_padding=1)
    assert torch.allclose(deconv(m), expected, atol=1e-6) and expected.shape == (2, 3, 4, 4)


@pytest.mark.parametrize("block, path, words", [
    ({"type": "deconv"}, "/body/0/type", "takes only streams that do not depend on the image"),
    ({"type": "conv", "kernel_size": 1, "stride": 2}, "/body/0/stride", "strided conv on a stream that depends on the image"),
    ({"type": "gated_resnet", "conv": "centred"}, "/body/0/conv", "centred gated_resnet reads positions below"),
])
def test_conditioning_network_blocks_are_refused_on_image_streams(block, path, words):
    data = {"name": "leak", "image": {"channels": 1, "height": 4, "width": 4, "bits": 1},
            "body": [{**block, "in": "x", "out": "h", **({"channels": 4} if block["type"] != "gated_resnet" else {})},
                     {"type": "masked_conv", "in": "h", "out": "h", "mask": "A", "channels": 4}],
            "head": {"type": "bernoulli", "in": "h"}}
    if block["type"] == "gated_resnet":
        data["body"].insert(0, {"type": "conv", "in": "x", "out": "x4", "channels": 4})
        data["body"][1]["in"] = "x4"
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(data))
    found = [(p.path, p.message) for p in error.value.problems]
    expected_path = path if block["type"] != "gated_resnet" else "/body/1/conv"
    assert any(where == expected_path and words in message for where, message in found), found


def test_a_map_input_with_a_factor_that_does_not_divide_the_image_or_a_reserved_name_is_reported():
    data = {"name": "bad", "image": {"channels": 1, "height": 6, "width": 6, "bits": 1},
            "inputs": {"m": {"type": "conditioning_map", "channels": 2, "factor": 4}, "half": {"type": "conditioning_map", "channels": 2}},
            "body": [{"type": "masked_conv", "mask": "A", "channels": 4}], "head": {"type": "bernoulli"}}
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(data))
    paths = {p.path for p in error.value.problems}
    assert paths == {"/inputs/m/factor", "/inputs/half"}


def test_an_earlier_stage_at_a_fraction_of_the_size_follows_the_stage_to_smaller_check_sizes():
    spec = parse_staged(json.loads((ROOT / "specs/pixelcnn_aux_pyramid_small.json").read_text()))
    last = spec.stage_specs[-1]
    assert last.inputs["level16"].factor == 2 and "level8" not in last.inputs  # only the variables a stage names become its inputs
    from arblocks.causality.check import check_image

    small = build_model(last, image=check_image(last, 8))  # 16x16 -> an 8x8 check: the level below is 4x4
    assert small.inputs["level16"].info.shape == (3, 4, 4)
    x = torch.randint(0, 256, (1, 3, 8, 8))
    assert small(x, level16=torch.zeros(1, 3, 4, 4)).shape[-2:] == (8, 8)
    assert sample_images(small.eval(), 1, conditioning={"level16": torch.zeros(1, 3, 4, 4)}).shape == (1, 3, 8, 8)


@pytest.mark.slow
def test_class_labels_reach_every_stage_in_training_and_sampling(tmp_path, capsys):
    data = json.loads(PYRAMID.read_text())
    data["inputs"]["digit"] = {"type": "class_label", "num_classes": 10}
    data["defaults"]["gated_resnet"]["label"] = "digit"  # every gated resnet of both stages gets a per-class vector
    spec = tmp_path / "labelled.json"
    spec.write_text(json.dumps(data))
    model = build_staged(parse_staged(data))
    assert model.provided_inputs == ["digit"] and all(stage.provided_inputs[0] == "digit" for stage in model.stages)
    run = tmp_path / "run"
    assert main(["train", str(spec), "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "8", "--no-progress"]) == 0
    assert main(["sample", str(run / "checkpoint.pt"), "-n", "2", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 2
    assert "--label" in capsys.readouterr().err
    assert main(["sample", str(run / "checkpoint.pt"), "-n", "2", "--label", "3", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
