"""Random compositions of the registered blocks are exactly causal (Hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arblocks.causality import check_model
from tests.helpers import build

SMOOTH = ["elu", "tanh", "gelu", "silu", "sigmoid", "leaky_relu"]  # no exact zeros that could hide a neighbour


@st.composite
def compositions(draw):
    channels = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(4, 8))
    widths = [6, 9, 12]
    width = draw(st.sampled_from(widths))
    body = [{"type": "masked_conv", "mask": "A", "kernel_size": draw(st.sampled_from([3, 5, 7])), "channels": width, "out": "h"}]
    stacked = 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["masked_conv", "activation", "residual", "concat_elu", "dropout", "add", "push", "conv", "shift"]))
        if kind == "masked_conv":
            width = draw(st.sampled_from(widths))
            body.append({"type": "masked_conv", "kernel_size": draw(st.sampled_from([1, 3, 5])), "channels": width})
        elif kind == "activation":
            body.append({"type": draw(st.sampled_from(SMOOTH))})
        elif kind == "residual":
            body.append({"type": "residual", "body": [
                {"type": draw(st.sampled_from(SMOOTH))},
                {"type": "masked_conv", "kernel_size": draw(st.sampled_from([1, 3])), "channels": width},
            ]})
        elif kind == "concat_elu":
            body.append({"type": "concat_elu"})
            width *= 2
        elif kind == "dropout":
            body.append({"type": "dropout", "p": 0.1})
        elif kind == "add":
            body.append({"type": "masked_conv", "in": "h", "out": "g", "kernel_size": 3, "channels": width})
            body.append({"type": "add", "in": ["h", "g"], "out": "h"})
        elif kind == "push":
            body.append({"type": "masked_conv", "in": "h", "out": "h", "kernel_size": 3, "channels": width, "push": "skips"})
            stacked += 1
        elif kind == "shift":
            body.append({"type": "shift", "direction": draw(st.sampled_from(["down", "right"]))})
        elif kind == "conv" and channels == 1:
            body.append({"type": "conv", "kernel_size": 1})
    for _ in range(stacked):
        body.append({"type": "concat", "in": ["h", {"pop": "skips"}], "out": "h"})
        width += 0  # channel count is inferred by the builder
    bits = draw(st.sampled_from([1, 4, 8]))
    head = {"type": draw(st.sampled_from(["categorical", "bernoulli"])) if bits == 1 else "categorical"}
    mode = draw(st.sampled_from(["train", "eval"]))
    return dict(body=body, head=head, channels=channels, size=size, bits=bits), mode


@settings(max_examples=100, deadline=None)
@given(compositions())
def test_random_compositions_are_exactly_causal(case):
    kwargs, mode = case
    model = build(**kwargs)
    report = check_model(model, modes=(mode,), samples=1)
    dep = report.modes[mode]
    assert not dep.violations, report.summary()
    assert dep.batch_independent
    # exactly zero on every future pixel and on later channels of the same pixel
    assert torch.count_nonzero(dep.dependency[~dep.allowed]) == 0
    if mode == "train" and any(b["type"] == "dropout" for b in kwargs["body"]):
        return  # dropout may cut a narrow channel group off its neighbours in one draw; eval mode checks the paths
    if any(b["type"] == "shift" for b in kwargs["body"]):
        return  # a shift moves the nearest neighbours out of reach by design
    seen = dep.dependency != 0  # [C, H, W, C, H, W]
    any_channel = seen.any(3)  # [C, H, W, H, W]: output sees some channel of the input pixel
    _, h, w, _, _ = any_channel.shape
    for r in range(h):
        for c in range(w):
            if c > 0:
                assert any_channel[:, r, c, r, c - 1].all(), f"output ({r},{c}) misses its left neighbour"
            if r > 0:
                assert any_channel[:, r, c, r - 1, c].all(), f"output ({r},{c}) misses its upper neighbour"
