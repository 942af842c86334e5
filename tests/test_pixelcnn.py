"""The shipped PixelCNN specs: architecture, likelihood, and the blind spot."""

import json
import math
from pathlib import Path

import pytest
import torch

from arblocks import build_model, load_spec, parse_spec
from arblocks.causality.check import check_model
from arblocks.spec.edit import visit
from tests.helpers import fit

SPECS = Path(__file__).parent.parent / "specs"


def conv_params(cin, cout, k):
    return cin * cout * k * k + cout


def test_cifar_pixelcnn_matches_the_paper_architecture():
    model = build_model(load_spec(SPECS / "pixelcnn.json"))
    h = 128
    expected = (
        conv_params(3, 2 * h, 7)
        + 15 * (conv_params(2 * h, h, 1) + conv_params(h, h, 3) + conv_params(h, 2 * h, 1))
        + conv_params(2 * h, 2 * h, 1)
        + conv_params(2 * h, 3 * 256, 1)  # the head's masked 1x1 projection: the second output layer
    )
    assert model.num_parameters() == expected == 3_503_616
    types = [s.type for s in model.steps]
    assert types == ["masked_conv"] + ["residual"] * 15 + ["relu", "masked_conv", "relu"]
    x = torch.randint(0, 256, (2, 3, 32, 32))
    logits = model(x)
    assert logits.shape == (2, 3, 256, 32, 32)


def test_nll_and_bits_per_dim():
    model = build_model(load_spec(SPECS / "pixelcnn_binarized_mnist.json"))
    x = torch.randint(0, 2, (3, 1, 28, 28))
    nll = model.nll(x)
    assert nll.shape == (3,) and nll.dtype == torch.float32
    assert torch.allclose(model.bits_per_dim(x), nll.sum() / (3 * 784 * math.log(2)))
    # at initialisation the predictions are close to uniform: about 1 bit per binary pixel
    assert 0.5 < model.bits_per_dim(x).item() < 1.5


def narrow(path, width=24):
    """The shipped spec with its widths divided, keeping kernels and depth (the receptive field's geometry)."""
    data = json.loads(Path(path).read_text())

    def shrink(node):
        if "channels" in node and node.get("type") == "masked_conv":
            node["channels"] = max(3, node["channels"] * width // 256)

    visit(data, shrink)
    data["image"].update(height=8, width=8)
    return parse_spec(data)


def expected_blind_spot(r, c, size=8, reach=3):
    """7x7 mask A then 3x3 mask B layers: k rows up, the rightmost visible column is c + k + reach - 1."""
    return {(r - k, col) for k in range(1, r + 1) for col in range(c + k + reach, size)}


@pytest.mark.slow
def test_pixelcnn_has_its_blind_spot_exactly_where_the_geometry_says():
    model = build_model(narrow(SPECS / "pixelcnn.json"))
    report = check_model(model, modes=("eval",), samples=2)
    assert report.ok
    main = report.modes["eval"]
    unseen = main.allowed & ~main.seen  # [C, H, W, C, H, W]
    for r in range(8):
        for c in range(8):
            got = {(int(i), int(j)) for _, i, j in unseen[:, r, c].any(0).nonzero().tolist()}
            assert got == expected_blind_spot(r, c), (r, c)
    coverage = report.coverage
    assert coverage[:, 1, 0].lt(1).all() and coverage[:, 0, :].nan_to_num(1.0).eq(1).all()
    assert report.min_coverage < 1
    spot = report.blind_spot()
    assert spot is not None and len(spot[1]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pixelcnn.json", "pixelcnn_binarized_mnist.json"])
def test_shipped_specs_are_causal(name):
    report = check_model(build_model(narrow(SPECS / name)))
    assert report.ok, report.summary()


def test_a_few_steps_of_adam_lower_the_nll():
    model = build_model(narrow(SPECS / "pixelcnn_binarized_mnist.json", width=32))
    # vertical stripes: every row repeats the first one, so a model that looks up can predict all but row 0
    x = (torch.rand(8, 1, 1, 8) < 0.5).long().expand(8, 1, 8, 8)
    first, last = fit(model, x, steps=30, lr=3e-3)
    assert last < 0.5 * first
