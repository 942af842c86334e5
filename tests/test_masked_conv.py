import pytest
import torch

from arblocks.causality.check import check_model
from arblocks.core.layers import conv_mask
from tests.helpers import build


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
@pytest.mark.parametrize("mask", ["A", "B"])
def test_spatial_mask_keeps_rows_above_and_left_of_centre(kernel, mask):
    m = conv_mask(mask, 1, 1, kernel, groups=1)[0, 0]
    c = kernel // 2
    assert m[:c].eq(1).all() and m[c, :c].eq(1).all() and m[c, c + 1 :].eq(0).all() and m[c + 1 :].eq(0).all()
    assert m[c, c] == (1 if mask == "B" else 0)


def test_centre_channel_groups_follow_the_subpixel_rule():
    # 6 outputs and 3 inputs in 3 groups: output group g = o // 2, input group = i
    a = conv_mask("A", 6, 3, 3, groups=3)[:, :, 1, 1]
    b = conv_mask("B", 6, 3, 3, groups=3)[:, :, 1, 1]
    out_group = torch.arange(6)[:, None] // 2
    in_group = torch.arange(3)[None, :]
    assert torch.equal(a.bool(), in_group < out_group)
    assert torch.equal(b.bool(), in_group <= out_group)


def test_mask_is_a_buffer_and_weights_are_untouched():
    model = build([{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6}], size=4)
    conv = model.layers[0]
    assert "conv.mask" in dict(conv.named_buffers())
    assert not any(k.endswith("mask") for k in conv.state_dict())  # derived from the config, not saved
    before = conv.conv.conv.weight.detach().clone()
    model(torch.randint(0, 256, (2, 3, 4, 4)))
    assert torch.equal(before, conv.conv.conv.weight)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kernel", [3, 5])
def test_mask_a_then_b_obeys_the_subpixel_rule_exactly(channels, kernel):
    body = [
        {"type": "masked_conv", "mask": "A", "kernel_size": kernel, "channels": 12},
        {"type": "masked_conv", "mask": "B", "kernel_size": kernel, "channels": 12},
    ]
    report = check_model(build(body, channels=channels, size=5))
    assert report.ok, report.summary()
    dep = report.modes["eval"].dependency
    if channels == 3:
        # at one pixel: channel c sees channels < c of that same pixel, and nothing else of it
        same_pixel = dep[:, 2, 2, :, 2, 2] != 0
        assert torch.equal(same_pixel, torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=torch.bool))
