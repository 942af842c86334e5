"""Equivalence fixtures from the original implementations (run by hand, with the original's code checked out; the
tests never fetch it and the repository never holds it).

    git clone https://github.com/pclucas14/pixel-cnn-pp /tmp/pixel-cnn-pp
    python benchmarks/original_fixtures.py pixelcnn_pp --original /tmp/pixel-cnn-pp
    git clone https://github.com/ajayjain/lmconv /tmp/lmconv
    python benchmarks/original_fixtures.py lmconv --original /tmp/lmconv
    git clone https://github.com/openai/pixel-cnn /tmp/pixel-cnn      # in an environment with tensorflow (2.x)
    python benchmarks/original_fixtures.py pixelcnn_pp_tf --original /tmp/pixel-cnn
    git clone https://github.com/openai/image-gpt /tmp/image-gpt        # the same environment
    python benchmarks/original_fixtures.py image_gpt --original /tmp/image-gpt
    git clone https://github.com/neocxi/pixelsnail-public /tmp/pixelsnail  # the same environment
    python benchmarks/original_fixtures.py pixelsnail --original /tmp/pixelsnail

For each configuration it builds the original model with random weights (every parameter drawn, the weight-norm
gains included, so that no layout difference hides behind a default), runs it in evaluation mode on fixed images,
and writes to tests/fixtures/NAME/: ``model.pth`` (the original's ``torch.save(model.state_dict())``, what its
training script saves) and ``expected.safetensors`` (the images as levels, the original's outputs and loss, its
configuration in the metadata). tests/test_importers.py imports ``model.pth`` into the shipped spec at the same
configuration (tests/originals.py) and compares.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.originals import FIXTURES  # noqa: E402

#: name -> (nr_resnet, nr_filters, nr_logistic_mix, image channels, size)
COMMIT = ""
PIXELCNN_PP = {"pixelcnn_pp_rgb": (1, 8, 2, 3, 8), "pixelcnn_pp_gray": (1, 6, 3, 1, 8)}


def pixelcnn_pp(original: Path) -> None:
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(original))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the port's loss calls .cuda(): stay on the CPU
    # utils.py holds one Python 2 statement (`print e`, in load_part_of_model, which this does not call): compile it
    # with that line as a call, in memory; model.py and layers.py then import it as they would
    utils = types.ModuleType("utils")
    utils.__file__ = str(original / "utils.py")
    exec(compile((original / "utils.py").read_text().replace("print e\n", "print(e)\n"), utils.__file__, "exec"), utils.__dict__)
    sys.modules["utils"] = utils
    from model import PixelCNN  # the original's modules, from --original
    from utils import discretized_mix_logistic_loss, discretized_mix_logistic_loss_1d

    commit = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or COMMIT
    for name, (nr_resnet, nr_filters, nr_mix, channels, size) in PIXELCNN_PP.items():
        torch.manual_seed(0)
        model = PixelCNN(nr_resnet=nr_resnet, nr_filters=nr_filters, nr_logistic_mix=nr_mix, input_channels=channels)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        model.eval()
        images = torch.randint(0, 256, (4, channels, size, size), generator=torch.Generator().manual_seed(1))
        x = images.float() / 127.5 - 1.0
        with torch.no_grad():
            outputs = model(x)
            loss = (discretized_mix_logistic_loss if channels == 3 else discretized_mix_logistic_loss_1d)(x, outputs)
        folder = FIXTURES / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "model.pth")
        config = {"original": "github.com/pclucas14/pixel-cnn-pp", "commit": commit, "nr_resnet": nr_resnet, "nr_filters": nr_filters,
                  "nr_logistic_mix": nr_mix, "channels": channels, "size": size, "torch": torch.__version__}
        save_file({"images": images.to(torch.uint8), "outputs": outputs.contiguous(), "loss": loss.reshape(1)},
                  str(folder / "expected.safetensors"), metadata={"config": json.dumps(config)})
        print(f"{folder}: loss {float(loss):.4f}, outputs {tuple(outputs.shape)}")


#: name -> (nr_resnet, nr_filters, nr_logistic_mix or None for binarized, image channels, size, the original's order, arblocks' order)
LMCONV = {"lmconv_rgb_s_curve": (1, 8, 2, 3, 8, "s_curve", "s_curve"), "lmconv_gray_hilbert": (1, 6, 3, 1, 8, "gilbert2d", "hilbert"),
          "lmconv_binary_s_curve": (1, 6, None, 1, 8, "s_curve", "s_curve")}


def lmconv(original: Path) -> None:
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(original))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the loss calls .cuda(): stay on the CPU
    try:
        import hilbertcurve.hilbertcurve  # noqa: F401 - masking.py imports it for its power-of-two Hilbert order, not used here
    except ImportError:
        stub = types.ModuleType("hilbertcurve.hilbertcurve")
        stub.HilbertCurve = None
        sys.modules["hilbertcurve"], sys.modules["hilbertcurve.hilbertcurve"] = types.ModuleType("hilbertcurve"), stub
    from layers import PONO  # the original's modules, from --original
    from masking import get_generation_order_idx, get_unfolded_masks
    from model import OurPixelCNN
    from utils import binarized_loss, discretized_mix_logistic_loss, discretized_mix_logistic_loss_1d

    commit = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or COMMIT
    for name, (nr_resnet, nr_filters, nr_mix, channels, size, order, ours) in LMCONV.items():
        torch.manual_seed(0)
        # the released models' configuration: --ours -k 3 --normalization pono -dp 0 (no weight norm on the convolutions)
        model = OurPixelCNN(nr_resnet=nr_resnet, nr_filters=nr_filters, nr_logistic_mix=nr_mix or 1, input_channels=channels, kernel_size=(3, 3),
                            max_dilation=2, weight_norm=False, feature_norm_op=lambda channels: PONO(), dropout_prob=0.0,
                            binarize=nr_mix is None)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.5)
        model.eval()
        idx = get_generation_order_idx(order, size, size)
        masks = [get_unfolded_masks(idx, size, size, k=3, dilation=d, mask_type=t) for d, t in ((1, "A"), (1, "B"), (2, "B"))]
        levels = 2 if nr_mix is None else 256
        images = torch.randint(0, levels, (4, channels, size, size), generator=torch.Generator().manual_seed(1))
        x = images.float() * (2.0 / (levels - 1)) - 1.0
        with torch.no_grad():
            outputs = model(x, mask_init=masks[0], mask_undilated=masks[1], mask_dilated=masks[2])
            loss = (binarized_loss if nr_mix is None else discretized_mix_logistic_loss if channels == 3 else discretized_mix_logistic_loss_1d)(x, outputs)
        folder = FIXTURES / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "model.pth")
        config = {"original": "github.com/ajayjain/lmconv", "commit": commit, "nr_resnet": nr_resnet, "nr_filters": nr_filters,
                  "nr_logistic_mix": nr_mix, "channels": channels, "size": size, "order": order, "arblocks_order": ours, "torch": torch.__version__}
        save_file({"images": images.to(torch.uint8), "outputs": outputs.contiguous(), "loss": loss.reshape(1)},
                  str(folder / "expected.safetensors"), metadata={"config": json.dumps(config)})
        print(f"{folder}: loss {float(loss):.4f}, outputs {tuple(outputs.shape)}")


#: name -> (nr_resnet, nr_filters, nr_logistic_mix, size): RGB, as the released CIFAR-10 model
PIXELCNN_PP_TF = {"pixelcnn_pp_tf": (1, 4, 2, 8)}


def _tf1():
    """TensorFlow 2's v1 compatibility layer as ``tensorflow``, and the two functions of ``tensorflow.contrib`` the
    TF1 originals import (arg_scope, add_arg_scope), so that their model code runs unchanged (run in an environment
    with tensorflow installed; the originals' code is never part of arblocks)."""
    import contextlib
    import functools

    import tensorflow

    tf = tensorflow.compat.v1
    tf.disable_v2_behavior()
    stack = [{}]

    @contextlib.contextmanager
    def arg_scope(functions, **kwargs):
        scope = dict(stack[-1])
        for f in functions:
            scope[f] = {**scope.get(f, {}), **kwargs}
        stack.append(scope)
        try:
            yield
        finally:
            stack.pop()

    def add_arg_scope(function):
        @functools.wraps(function)
        def scoped(*args, **kwargs):
            return function(*args, **{**stack[-1].get(scoped, {}), **kwargs})
        return scoped

    ops = types.ModuleType("tensorflow.contrib.framework.python.ops")
    ops.arg_scope, ops.add_arg_scope = arg_scope, add_arg_scope
    for name in ("tensorflow.contrib", "tensorflow.contrib.framework", "tensorflow.contrib.framework.python"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["tensorflow.contrib.framework.python.ops"] = ops
    sys.modules["tensorflow"] = tf
    return tf


def pixelcnn_pp_tf(original: Path) -> None:
    """The TensorFlow original (openai/pixel-cnn) under TF2's v1 compatibility layer: a checkpoint written by its own
    Saver with raw weights, EMA shadows (other values than the raw ones) and its Adam slots, and the EMA model's
    outputs and loss."""
    tf = _tf1()
    sys.path.insert(0, str(original))
    import pixel_cnn_pp.nn as nn  # the original's modules, from --original
    from pixel_cnn_pp.model import model_spec

    for name, (nr_resnet, nr_filters, nr_mix, size) in PIXELCNN_PP_TF.items():
        options = dict(nr_resnet=nr_resnet, nr_filters=nr_filters, nr_logistic_mix=nr_mix, resnet_nonlinearity="concat_elu")
        nn_py_fixture(tf, nn, model_spec, options, original, "github.com/openai/pixel-cnn", name, size, init=False)


def nn_py_fixture(tf, nn, model_spec, options: dict, original: Path, url: str, name: str, size: int, *, init: bool) -> None:
    """A fixture of an original built on pixel-cnn's ``nn.py`` (PixelCNN++, PixelSNAIL): its Saver's checkpoint with
    every variable drawn (raw weights, EMA shadows unlike them, Adam slots), then the EMA model's outputs and loss
    from a fresh graph restored from it, as a user of the release gets them. ``init``: call the model once with
    its train.py's data-dependent initialization first, which creates the variables."""
    import numpy as np
    from safetensors.numpy import save_file

    commit = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or COMMIT
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, size, size, 3))
    folder = FIXTURES / name
    folder.mkdir(parents=True, exist_ok=True)
    for write in (True, False):  # write the checkpoint; then read it back in a fresh graph
        tf.reset_default_graph()
        if hasattr(nn, "get_causal_mask"):
            nn.get_causal_mask.cache_clear()  # PixelSNAIL's nn.py caches graph constants
        x = tf.constant(images.astype(np.float32) / 127.5 - 1.0)
        model = tf.make_template("model", model_spec)
        if init:
            model(x, None, init=True, dropout_p=0.5, **options)
        train_out = model(x, None, init=False, dropout_p=0.5, **options)
        params = tf.trainable_variables()
        ema = tf.train.ExponentialMovingAverage(decay=0.9995)
        maintain = ema.apply(params)
        optimizer = nn.adam_updates(params, nn.discretized_mix_logistic_loss(x, train_out), lr=1e-3) if write else None
        test_out = model(x, None, ema=ema, dropout_p=0.0, **options)
        loss = nn.discretized_mix_logistic_loss(x, test_out)
        with tf.Session() as session:
            if write:
                session.run(tf.global_variables_initializer())
                session.run([maintain, optimizer])  # the EMA shadows and Adam slots exist with their values
                for v in tf.global_variables():  # every variable drawn; `load` feeds the value: no new op per variable
                    v.load(rng.normal(0, 0.5, v.shape.as_list()).astype(v.dtype.as_numpy_dtype), session)
                tf.train.Saver().save(session, str(folder / "model.ckpt"), write_meta_graph=False)
            else:
                tf.train.Saver().restore(session, str(folder / "model.ckpt"))
                outputs, value = session.run([test_out, loss])
    (folder / "checkpoint").unlink(missing_ok=True)
    config = {"original": url, "commit": commit, **options, "channels": 3, "size": size, "tensorflow": tf.__version__, "weights": "ema"}
    save_file({"images": np.ascontiguousarray(images.transpose(0, 3, 1, 2).astype(np.uint8)), "outputs": np.ascontiguousarray(outputs.transpose(0, 3, 1, 2)),
               "loss": np.array([value], dtype=np.float32)}, str(folder / "expected.safetensors"), metadata={"config": json.dumps(config)})
    print(f"{folder}: loss {float(value):.4f}, outputs {outputs.shape}")


#: name -> (n_layer, n_embd, n_head, n_vocab, n_px)
IMAGE_GPT = {"image_gpt_tf": (2, 16, 2, 16, 8)}


def image_gpt_model(original: Path):
    """The original's ``model(hparams, X, Y)`` (src/model.py), its ``tensorflow.contrib.training.HParams`` import
    shimmed as a plain namespace (after :func:`_tf1`)."""
    training = types.ModuleType("tensorflow.contrib.training")
    training.HParams = lambda **values: types.SimpleNamespace(**values)
    sys.modules["tensorflow.contrib.training"] = training
    sys.path.insert(0, str(original / "src"))
    from model import model  # the original's module, from --original

    return model


def image_gpt(original: Path) -> None:
    """Image GPT's original model (openai/image-gpt, src/model.py) under TF2's v1 layer (HParams shimmed as a plain
    namespace): a checkpoint of random weights written by a Saver, its generative logits and loss on random tokens,
    and random colour clusters in [-1, 1] as kmeans_centers.npy."""
    import numpy as np
    from safetensors.numpy import save_file

    tf = _tf1()
    model = image_gpt_model(original)

    commit = subprocess.run(["git", "-C", str(original), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or COMMIT
    for name, (n_layer, n_embd, n_head, n_vocab, n_px) in IMAGE_GPT.items():
        tf.reset_default_graph()
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, n_vocab, (4, n_px * n_px))
        hparams = types.SimpleNamespace(n_vocab=n_vocab, n_ctx=n_px * n_px, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                                        bert=False, bert_mask_prob=0.15, clf=False)
        results = model(hparams, tf.constant(tokens, dtype=tf.int32), tf.zeros([4, 10]))
        folder = FIXTURES / name
        folder.mkdir(parents=True, exist_ok=True)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for v in tf.global_variables():  # every variable drawn (the original initializes its output embedding to 0)
                session.run(v.assign(rng.normal(0, 0.3, v.shape.as_list()).astype(np.float32)))
            tf.train.Saver().save(session, str(folder / "model.ckpt"), write_meta_graph=False)
            logits, loss = session.run([results["gen_logits"], results["gen_loss"]])
        (folder / "checkpoint").unlink(missing_ok=True)
        np.save(folder / "kmeans_centers.npy", rng.uniform(-1, 1, (n_vocab, 3)).astype(np.float32))
        config = {"original": "github.com/openai/image-gpt", "commit": commit, "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head,
                  "n_vocab": n_vocab, "n_px": n_px, "tensorflow": tf.__version__}
        save_file({"tokens": np.ascontiguousarray(tokens.reshape(4, 1, n_px, n_px).astype(np.int32)), "logits": np.ascontiguousarray(logits),
                   "loss": np.array([loss], dtype=np.float32)}, str(folder / "expected.safetensors"), metadata={"config": json.dumps(config)})
        print(f"{folder}: loss {float(loss):.4f}, logits {logits.shape}")


#: name -> (nr_resnet, nr_filters, attention rounds, nr_logistic_mix, size)
PIXELSNAIL = {"pixelsnail_tf": (1, 8, 2, 2, 8)}


def pixelsnail(original: Path) -> None:
    """PixelSNAIL's original (neocxi/pixelsnail-public, its h12_noup_smallkey model at a small size) under TF2's v1
    layer, as pixelcnn_pp_tf: raw weights, EMA shadows and Adam slots in its Saver's checkpoint, the EMA model's
    outputs and loss from a fresh graph restored from it."""
    import tensorflow.python.framework.function  # noqa: F401 - the original imports these by their TF1 paths
    import tensorflow.python.ops.variables  # noqa: F401

    tf = _tf1()
    sys.path.insert(0, str(original))
    import pixel_cnn_pp.nn as nn  # the original's modules, from --original
    from pixel_cnn_pp.model import _base_noup_smallkey_spec

    for name, (nr_resnet, nr_filters, attn_rep, nr_mix, size) in PIXELSNAIL.items():
        # its train.py defaults (resnet_nonlinearity elu), which the released model used
        options = dict(nr_resnet=nr_resnet, nr_filters=nr_filters, attn_rep=attn_rep, nr_logistic_mix=nr_mix, resnet_nonlinearity="elu")
        nn_py_fixture(tf, nn, _base_noup_smallkey_spec, options, original, "github.com/neocxi/pixelsnail-public", name, size, init=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", choices=["pixelcnn_pp", "lmconv", "pixelcnn_pp_tf", "image_gpt", "pixelsnail"])
    parser.add_argument("--original", dest="path", type=Path, required=True, help="a checkout of the original's code")
    parser.add_argument("--commit", default="", help="the original's commit, where --original is not a git checkout")
    args = parser.parse_args()
    global COMMIT
    COMMIT = args.commit
    {"pixelcnn_pp": pixelcnn_pp, "lmconv": lmconv, "pixelcnn_pp_tf": pixelcnn_pp_tf, "image_gpt": image_gpt, "pixelsnail": pixelsnail}[args.original](args.path)


if __name__ == "__main__":
    main()
