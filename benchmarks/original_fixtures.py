"""Equivalence fixtures from the original implementations (run by hand, with the original's code checked out; the
tests never fetch it and the repository never holds it).

    git clone https://github.com/pclucas14/pixel-cnn-pp /tmp/pixel-cnn-pp
    python benchmarks/original_fixtures.py pixelcnn_pp --original /tmp/pixel-cnn-pp
    git clone https://github.com/ajayjain/lmconv /tmp/lmconv
    python benchmarks/original_fixtures.py lmconv --original /tmp/lmconv

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

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.originals import FIXTURES  # noqa: E402

#: name -> (nr_resnet, nr_filters, nr_logistic_mix, image channels, size)
COMMIT = ""
PIXELCNN_PP = {"pixelcnn_pp_rgb": (1, 8, 2, 3, 8), "pixelcnn_pp_gray": (1, 6, 3, 1, 8)}


def pixelcnn_pp(original: Path) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", choices=["pixelcnn_pp", "lmconv"])
    parser.add_argument("--original", dest="path", type=Path, required=True, help="a checkout of the original's code")
    parser.add_argument("--commit", default="", help="the original's commit, where --original is not a git checkout")
    args = parser.parse_args()
    global COMMIT
    COMMIT = args.commit
    {"pixelcnn_pp": pixelcnn_pp, "lmconv": lmconv}[args.original](args.path)


if __name__ == "__main__":
    main()
