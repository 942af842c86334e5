"""The example plugin, tested the way every plugin should be: through its entry point and the conformance kit."""

import pytest
import torch

from arblocks import build_model, get_registry, parse_spec
from arblocks.causality import check_model
from arblocks.testing import check_plugin


def test_registered_through_the_entry_point():
    entry = get_registry().blocks["channel_gate"]
    assert entry.distribution == "arblocks-example" and entry.plugin == "example"


@pytest.mark.slow
def test_conformance_kit_passes():
    report = check_plugin("arblocks-example")
    assert report.ok, report.summary()
    assert {f.check for f in report.findings} == {"causality", "state_dict round trip", "batch-size independence", "float32 and float64", "devices", "incremental step"}


def test_gate_uses_only_the_past():
    spec = parse_spec({
        "name": "gated", "image": {"channels": 3, "height": 6, "width": 6, "bits": 8},
        "body": [{"type": "masked_conv", "mask": "A", "channels": 12}, {"type": "channel_gate"}],
        "head": {"type": "categorical"},
    })
    model = build_model(spec)
    report = check_model(model)
    assert report.ok, report.summary()
    x = torch.randint(0, 256, (1, 3, 6, 6))
    y = x.clone()
    y[0, :, 5, 5] = 255 - y[0, :, 5, 5]  # change the last pixel: nothing before it may move
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[..., :5, :], b[..., :5, :]) and torch.equal(a[..., 5, :5], b[..., 5, :5])


def test_proven_at_a_large_size_through_its_dependency_mask():
    """At 40x40 the running mean costs too much to prove position by position; its dependency mask proves it."""
    from arblocks.causality.block_proof import full_size_layers, prove_blocks
    from arblocks.causality.check import check_image, float64_probe
    from arblocks.core.ordering import ordering_of

    spec = parse_spec({
        "name": "gated", "image": {"channels": 3, "height": 40, "width": 40, "bits": 8},
        "body": [{"type": "masked_conv", "mask": "A", "channels": 6}, {"type": "channel_gate"}],
        "head": {"type": "categorical"},
    })
    full = build_model(spec, device="meta")
    model = float64_probe(build_model(spec, image=check_image(spec, 6)), private=True)
    proofs = prove_blocks(model, full, ordering_of(spec).rank(40, 40), budget=0, full_layer=full_size_layers(model, full))
    assert proofs.violations == [] and proofs.by_mask == ["/body/1"]
