"""Extra inputs: class labels, positional maps and conditioning maps flow through streams and stay causal."""

import pytest
import torch

from arblocks.causality.check import check_model
from tests.helpers import build

FIRST = {"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6, "out": "h"}


def class_conditional(**kwargs):
    body = [
        FIRST,
        {"type": "embedding", "in": "label", "channels": 6, "out": "cond"},
        {"type": "add", "in": ["h", "cond"], "out": "h"},
        {"type": "masked_conv", "kernel_size": 3},
    ]
    return build(body, inputs={"label": {"type": "class_label", "num_classes": 10}}, size=5, **kwargs)


def test_class_conditional_model_uses_the_label_and_stays_causal():
    model = class_conditional()
    x = torch.randint(0, 256, (2, 3, 5, 5))
    a = model(x, label=torch.tensor([0, 1]))
    b = model(x, label=torch.tensor([2, 1]))
    assert not torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert check_model(model).ok


def test_missing_or_bad_inputs_are_clear_errors():
    model = class_conditional()
    x = torch.randint(0, 256, (2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"missing input\(s\) \['label'\]"):
        model(x)
    with pytest.raises(ValueError, match=r"lie in \[0, 9\]"):
        model(x, label=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="unknown input"):
        model(x, label=torch.tensor([0, 1]), colour=torch.tensor([0, 1]))


def test_positional_grid_and_conditioning_map_concatenate_with_features():
    body = [
        {"type": "conv", "in": "cond", "kernel_size": 3, "channels": 4, "out": "c"},  # k x k is fine on a conditioning input
        {"type": "masked_conv", "in": "x", "mask": "A", "kernel_size": 3, "channels": 6, "out": "h"},
        {"type": "concat", "in": ["h", "grid", "c"], "out": "h"},
        {"type": "masked_conv", "kernel_size": 1, "channels": 6},
    ]
    inputs = {"grid": {"type": "positional_grid"}, "cond": {"type": "conditioning_map", "channels": 2}}
    model = build(body, inputs=inputs, channels=1, size=5)
    assert model.layers[2].output_info.channels == 6 + 2 + 4
    out = model(torch.randint(0, 256, (2, 1, 5, 5)), cond=torch.randn(2, 2, 5, 5))
    assert out.shape == (2, 1, 256, 5, 5)
    assert check_model(model).ok


def test_embedding_refuses_an_image_stream():
    from arblocks import SpecError

    with pytest.raises(SpecError, match="embedding reads a class-label stream"):
        build([FIRST, {"type": "embedding", "channels": 4}])
