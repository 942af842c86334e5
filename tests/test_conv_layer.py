"""The float64 convolution of small maps as one matrix product (the path the causality checks take): the same
function as ``F.conv2d``, and each image computed the same way at the same row of batches of one shape."""

import pytest
import torch
import torch.nn.functional as F

from arblocks.core import layers
from arblocks.core.layers import Conv, conv_as_one_product


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_the_product_is_conv2d(stride, bias):
    x = torch.randn(5, 6, 5, 7, dtype=torch.float64)
    w = torch.randn(4, 6, 2, 3, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64) if bias else None
    torch.testing.assert_close(conv_as_one_product(x, w, b, stride), F.conv2d(x, w, b, stride=stride), rtol=1e-12, atol=1e-12)


def test_conv_takes_the_product_for_small_float64_maps_only(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "conv_as_one_product", lambda *args: calls.append(args[0].shape) or F.conv2d(args[0], args[1], args[2], stride=args[3]))
    conv = Conv(3, 4, (2, 3)).double()
    conv(torch.randn(2, 3, 3, 4, dtype=torch.float64))  # 2x2 outputs
    assert len(calls) == 1
    conv(torch.randn(2, 3, 9, 10, dtype=torch.float64))  # 8x8 outputs: conv2d is faster there
    conv.float()(torch.randn(2, 3, 3, 4))  # float32: conv2d
    assert len(calls) == 1


def test_an_image_is_computed_bit_for_bit_alike_at_the_same_row_of_batches_of_one_shape():
    """What the value walk and the state checks compare: the other images of the batch do not change its bits."""
    conv = Conv(8, 16, (2, 3), weight_norm=True).double()
    x = torch.randn(6, 8, 3, 4, dtype=torch.float64)
    other = x.clone()
    other[1:] = torch.randn(5, 8, 3, 4, dtype=torch.float64)
    assert torch.equal(conv(x)[0], conv(other)[0])
