"""Gated PixelCNN as a spec: structure, exact causality, no blind spot, conditioning."""

from pathlib import Path

import pytest
import torch

from arblocks import build_model, load_spec, parse_spec
from arblocks.causality.check import check_model
from tests.helpers import build, shrunk_spec

SPECS = Path(__file__).parent.parent / "specs"


@pytest.mark.slow
def test_twenty_gated_layers_of_384_channels_with_5x5_filters():
    spec = load_spec(SPECS / "gated_pixelcnn.json")
    model = build_model(spec)
    vertical = [model.layers[s.index] for s in model.steps if s.type == "down_shifted_conv"]
    horizontal = [model.layers[s.index] for s in model.steps if s.type == "down_right_shifted_conv"]
    assert len(vertical) == len(horizontal) == 20
    assert {tuple(v.conv.conv.kernel_size) for v in vertical} == {(3, 5)}  # n//2+1 x n
    assert {tuple(h.conv.conv.kernel_size) for h in horizontal} == {(1, 3)}  # 1 x n//2+1
    assert [h.config.mask for h in horizontal] == ["A"] + ["B"] * 19
    gates = [s for s in model.steps if s.type == "gate"]
    assert len(gates) == 40 and all(model.layers[g.index].output_info.channels == 384 for g in gates)
    assert model(torch.randint(0, 256, (1, 3, 32, 32))).shape == (1, 3, 256, 32, 32)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [3, 1])
def test_gated_pixelcnn_is_causal_and_has_no_blind_spot(channels):
    spec = shrunk_spec(SPECS / "gated_pixelcnn.json", divide=16, times={19: 5}, size=8)  # 24 channels, 6 layers
    if channels == 1:
        spec = spec.model_copy(update={"image": spec.image.model_copy(update={"channels": 1})})
    report = check_model(build_model(spec), samples=3)  # the output ReLUs may silence a narrow group on one image
    assert report.ok, report.summary()
    assert report.min_coverage == 1.0, report.summary()
    # in particular the last pixel of the previous row, which PixelCNN's blind spot hides
    seen = report.modes["eval"].seen
    assert seen[:, 1, 0, :, 0, 7].all()


def test_class_label_and_conditioning_map_enter_the_gates():
    spec = shrunk_spec(SPECS / "gated_pixelcnn_cifar10_classcond.json", divide=32, times={19: 2}, size=6)
    model = build_model(spec).eval()
    x = torch.randint(0, 256, (2, 3, 6, 6))
    a, b = model(x, label=torch.tensor([1, 1])), model(x, label=torch.tensor([1, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    assert check_model(model).ok

    body = [
        {"type": "down_right_shifted_conv", "in": "x", "channels": 12, "kernel_size": [1, 3], "mask": "A", "out": "h"},
        {"type": "gate", "in": "h", "cond": "depth", "label": "label", "out": "g"},
    ]
    inputs = {"depth": {"type": "conditioning_map", "channels": 2}, "label": {"type": "class_label", "num_classes": 4}}
    model = build(body, inputs=inputs, size=5)
    cond = torch.randn(1, 2, 5, 5)
    out1 = model(torch.zeros(1, 3, 5, 5, dtype=torch.long), depth=cond, label=torch.tensor([0]))
    out2 = model(torch.zeros(1, 3, 5, 5, dtype=torch.long), depth=cond + 1, label=torch.tensor([0]))
    assert not torch.allclose(out1, out2)
    assert check_model(model).ok


def test_gate_keeps_the_subpixel_groups():
    from arblocks.blocks.gated import split_gate

    z = torch.randn(1, 12, 1, 1)  # 3 groups of 4: [a a b b] each
    out = split_gate(z, 3)
    expected = torch.cat([torch.tanh(z[:, 4 * g : 4 * g + 2]) * torch.sigmoid(z[:, 4 * g + 2 : 4 * g + 4]) for g in range(3)], 1)
    assert torch.allclose(out, expected)


def test_vertical_stack_without_shift_on_the_image_is_refused():
    from arblocks import SpecError

    data = {"name": "t", "image": {"channels": 1, "height": 5, "width": 5, "bits": 8},
            "body": [{"type": "down_shifted_conv", "channels": 4, "kernel_size": [2, 3]}], "head": {"type": "categorical"}}
    with pytest.raises(SpecError, match="down_shifted_conv sees the whole current row"):
        build_model(parse_spec(data))
