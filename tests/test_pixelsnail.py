"""PixelSNAIL as a spec, and the causal attention block."""

import json
import math
from pathlib import Path

import pytest
import torch

from arblocks import build_model, load_spec, parse_spec
from arblocks.causality.check import check_model
from arblocks.spec.edit import visit
from tests.helpers import build, fit

SPECS = Path(__file__).parent.parent / "specs"
SMALL = {12: 2, 4: 1}  # 2 blocks of 1 gated resnet


def narrow(path, filters=32, size=8):
    """The spec with `filters` filters (keys of 16, values of filters / 2), 2 blocks of 1 gated resnet, on size x size."""
    data = json.loads(Path(path).read_text())

    def narrow_node(node):
        if node.get("type") == "repeat":
            node["times"] = SMALL.get(node["times"], node["times"])
        if node.get("channels") == 256:
            node["channels"] = filters
        if node.get("out") == "kv":
            node["channels"] = filters // 2 + 16
        if node.get("out") == "value":
            node["stop"] = filters // 2 + 16

    visit(data, narrow_node)
    data["image"].update(height=size, width=size)
    return parse_spec(data)


@pytest.mark.slow
def test_parameter_count_matches_the_original_implementation():
    model = build_model(load_spec(SPECS / "pixelsnail.json"))
    assert model.num_parameters() == 46_180_788
    assert sum(s.type == "causal_attention" for s in model.steps) == 12
    assert sum(s.type == "gated_resnet" for s in model.steps) == 12 * (4 + 3)
    assert model(torch.randint(0, 256, (1, 3, 32, 32))).shape == (1, 100, 32, 32)


def reference_attention(q, k, v, heads, include_current=False):
    """Masked softmax attention written out in float64, position by position."""
    b, c, h, w = q.shape
    n = h * w
    out = torch.zeros(b, v.shape[1], n, dtype=torch.float64)
    dq, dv = c // heads, v.shape[1] // heads
    qf, kf, vf = (t.double().reshape(b, t.shape[1], n) for t in (q, k, v))
    for i in range(n):
        visible = list(range(i + 1 if include_current else i))
        if not visible:
            continue
        for head in range(heads):
            qs, ks, vs = slice(head * dq, (head + 1) * dq), slice(head * dq, (head + 1) * dq), slice(head * dv, (head + 1) * dv)
            scores = torch.stack([(qf[:, qs, i] * kf[:, ks, j]).sum(1) / math.sqrt(dq) for j in visible], 1)  # [B, J]
            weights = torch.softmax(scores, 1)
            out[:, vs, i] = sum(weights[:, idx, None] * vf[:, vs, j] for idx, j in enumerate(visible))
    return out.reshape(b, -1, h, w)


@pytest.mark.parametrize("heads, include_current", [(1, False), (2, False), (2, True)])
def test_attention_equals_a_masked_softmax_computed_by_hand(heads, include_current):
    body = [
        {"type": "conv", "in": "q", "out": "qq"},  # identity-sized projections keep the test about attention
        {"type": "causal_attention", "in": "q", "key": "k", "value": "v", "heads": heads, "include_current": include_current, "out": "att"},
    ]
    inputs = {name: {"type": "conditioning_map", "channels": c} for name, c in (("q", 4), ("k", 4), ("v", 6))}
    model = build(body, inputs=inputs, channels=1, size=4, static_causality=False).double()
    attention = model.layers[1]
    q, k, v = (torch.randn(2, c, 4, 4, dtype=torch.float64) for c in (4, 4, 6))
    got = attention(q, k, v)
    assert torch.allclose(got, reference_attention(q, k, v, heads, include_current), atol=1e-12)


def test_first_position_is_zero_without_nan_and_without_gradient():
    body = [{"type": "causal_attention", "in": "q", "key": "k", "value": "v", "out": "att"}]
    inputs = {name: {"type": "conditioning_map", "channels": 4} for name in "qkv"}
    attention = build(body, inputs=inputs, channels=1, size=3, static_causality=False).layers[0]
    q, k, v = (torch.randn(1, 4, 3, 3, requires_grad=True) for _ in range(3))
    out = attention(q, k, v)
    assert torch.isfinite(out).all() and out[:, :, 0, 0].eq(0).all()
    out[:, :, 0, 0].sum().backward()
    assert all(t.grad is not None and t.grad.eq(0).all() for t in (q, k, v))
    assert attention.attend.dtype == torch.bool and "attend" in dict(attention.named_buffers())


def test_small_pixelsnail_is_causal_with_full_coverage_including_the_previous_rows_last_pixel():
    model = build_model(narrow(SPECS / "pixelsnail.json"))
    report = check_model(model)
    assert report.ok, report.summary()
    assert report.min_coverage == 1.0
    seen = report.modes["eval"].seen  # [1, H, W, C, H, W]: joint head, one output per pixel
    for r in range(1, 8):
        assert seen[0, r, 0, :, r - 1, 7].all(), f"output ({r},0) must see the last pixel of row {r - 1}"


def test_without_the_raw_image_in_the_keys_that_pixel_is_missed(tmp_path):
    """The widely used port's mistake: keys and values from features only. arblocks shows the blind spot it makes."""
    data = json.loads((SPECS / "pixelsnail.json").read_text())
    block = data["body"][4]["body"]
    kv = next(b for b in block if b.get("out") == "kv_in")
    kv["in"] = ["ul", "background"]  # no raw x
    path = tmp_path / "pixelsnail_no_raw.json"
    path.write_text(json.dumps(data))
    report = check_model(build_model(narrow(path)), modes=("eval",))
    assert report.ok  # still causal...
    seen = report.modes["eval"].seen
    assert not seen[0, 3, 0, :, 2, 7].any()  # ...but blind to the last pixel of the previous row
    assert report.min_coverage < 1


@pytest.mark.slow
def test_pixelsnail_small_trains():
    torch.manual_seed(0)
    model = build_model(load_spec(SPECS / "pixelsnail_small.json"))
    x = (torch.rand(4, 1, 1, 28) * 255).long().expand(4, 1, 28, 28)  # every row repeats the first
    first, last = fit(model, x, steps=25, lr=2e-3)
    assert last < 0.75 * first


def test_attention_with_include_current_refuses_raw_keys():
    from arblocks import SpecError

    body = [
        {"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 4, "out": "q"},
        {"type": "causal_attention", "in": "q", "key": "x", "value": "x", "include_current": True},
    ]
    with pytest.raises(SpecError, match="include_current"):
        build(body, channels=4, size=4)
