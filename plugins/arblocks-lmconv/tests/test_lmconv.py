"""The lmconv plugin: orderings, locally masked convolutions, the paper's CIFAR-10 spec, conformance."""

import json
from pathlib import Path

import pytest
import torch
from arblocks_lmconv.orderings import Hilbert, HilbertConfig, SCurve, hilbert_path

from arblocks import build_model, get_registry, load_spec, parse_spec
from arblocks.causality import check_model
from arblocks.sampling import NaiveSampler
from arblocks.testing import check_plugin

SPECS = Path(__file__).resolve().parents[3] / "specs"


@pytest.mark.parametrize("height, width", [(4, 4), (8, 8), (5, 7), (3, 10), (32, 32), (1, 6)])
def test_hilbert_visits_every_pixel_through_neighbours(height, width):
    path = hilbert_path(width, height)
    assert sorted(path) == sorted((x, y) for x in range(width) for y in range(height))
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(path, path[1:]))
    assert sorted(Hilbert().rank(height, width).flatten().tolist()) == list(range(height * width))


def test_s_curve_and_transforms():
    assert SCurve().rank(2, 3).tolist() == [[0, 1, 2], [5, 4, 3]]
    transposed = Hilbert(HilbertConfig(transpose=True, reflect_cols=True)).rank(4, 4)
    assert torch.equal(transposed, Hilbert().rank(4, 4).T.flip(1))


def spec_with(ordering, body, channels=1, size=6):
    return parse_spec({"name": "t", "image": {"channels": channels, "height": size, "width": size, "bits": 8},
                       "ordering": ordering, "body": body, "head": {"type": "logistic_mixture", "components": 2}})


def test_under_raster_order_it_equals_a_masked_convolution():
    lm = build_model(spec_with("raster", [{"type": "locally_masked_conv", "mask": "A", "channels": 4, "kernel_size": 5}]))
    mc = build_model(spec_with("raster", [{"type": "masked_conv", "mask": "A", "channels": 4, "kernel_size": 5}]))
    with torch.no_grad():
        mc.layers[0].conv.conv.weight.copy_(lm.layers[0].conv.weight)
        mc.layers[0].conv.conv.bias.copy_(lm.layers[0].conv.bias)
    x = torch.randn(2, 1, 6, 6)
    assert torch.allclose(lm.layers[0](x), mc.layers[0](x), atol=1e-5)


@pytest.mark.parametrize("ordering", ["s_curve", "hilbert", {"type": "hilbert", "transpose": True}, {"type": "s_curve", "reflect_rows": True}])
def test_causal_with_full_coverage_under_every_order(ordering):
    body = [
        {"type": "locally_masked_conv", "mask": "A", "channels": 8},
        {"type": "repeat", "times": 3, "body": [{"type": "lm_gated_resnet"}]},
        {"type": "locally_masked_conv", "channels": 8, "dilation": 2},
        {"type": "lm_gated_resnet"},
    ]
    report = check_model(build_model(spec_with(ordering, body, channels=3)))
    assert report.ok, report.summary()
    assert report.min_coverage == 1.0


def test_blocks_for_raster_only_are_refused_under_another_order():
    from arblocks import SpecError

    with pytest.raises(SpecError, match="causal only under \\['raster'\\], not under ordering 'hilbert'"):
        build_model(spec_with("hilbert", [{"type": "masked_conv", "mask": "A", "channels": 4}]))


def test_the_papers_cifar10_model():
    spec = load_spec(SPECS / "lmconv.json")
    assert spec.ordering.type == "s_curve"
    model = build_model(spec)
    assert model.num_parameters() == 46_072_360


def test_the_sampler_follows_the_order():
    spec = spec_with("hilbert", [{"type": "locally_masked_conv", "mask": "A", "channels": 4}], size=4)
    sampler = NaiveSampler(build_model(spec))
    rank = Hilbert().rank(4, 4)
    assert [int(rank[r, c]) for r, c in sampler.positions] == list(range(16))
    assert sampler.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 4, 4)


@pytest.mark.slow
def test_plugin_is_registered_and_conformant():
    registry = get_registry()
    assert registry.blocks["locally_masked_conv"].distribution == "arblocks-lmconv"
    assert {"s_curve", "hilbert"} <= set(registry.orderings)
    report = check_plugin("arblocks-lmconv")
    assert report.ok, report.summary()


@pytest.mark.slow
def test_small_spec_checks(tmp_path):
    data = json.loads((SPECS / "lmconv_small.json").read_text())
    data["image"].update(height=6, width=6)
    report = check_model(build_model(parse_spec(data)))
    assert report.ok and report.min_coverage == 1.0
