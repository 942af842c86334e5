"""Convolution layers shared by the blocks: optional weight normalization, optional mask, data-dependent init.

Weight normalization uses ``torch.nn.utils.parametrizations.weight_norm`` (the parametrization, which works under
DDP and ``torch.compile``; the old ``weight_norm`` hook is deprecated). :func:`data_dependent_init` implements the
initialization of Salimans & Kingma (2016) as PixelCNN++ uses it: in one forward pass on a batch of data, each
weight-normalized layer, in order, rescales its gain and shifts its bias so that its outputs have zero mean and
standard deviation ``init_scale`` per channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from .ops import channel_groups


class Conv(nn.Module):
    """A 2-d convolution (or transposed convolution) with optional weight norm and an optional weight mask buffer.

    Padding is the caller's job (the shifted convolutions pad asymmetrically).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        bias: bool = True,
        weight_norm: bool = False,
        mask: torch.Tensor | None = None,
        init_scale: float = 1.0,
        transposed: bool = False,
    ):
        super().__init__()
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = cls(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self.transposed = transposed
        self.stride = stride
        self.init_scale = init_scale
        if weight_norm:
            # one gain per output channel: dim 0 of a Conv2d weight, dim 1 of a ConvTranspose2d weight
            apply_weight_norm(self.conv, dim=1 if transposed else 0)
        self.register_buffer("mask", mask, persistent=False)

    @property
    def weight_normed(self) -> bool:
        return hasattr(self.conv, "parametrizations")

    def weight(self) -> torch.Tensor:
        w = self.conv.weight
        return w * self.mask if self.mask is not None else w

    def forward(self, x: torch.Tensor, output_padding: int = 0) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(x, self.weight(), self.conv.bias, stride=self.stride, output_padding=output_padding)
        if x.shape[-1] * x.shape[-2] == 1 and self.conv.kernel_size == (1, 1):  # one position (sampling): a matmul is far cheaper
            return F.linear(x.flatten(1), self.weight().flatten(1), self.conv.bias)[:, :, None, None]
        if x.dtype == torch.float64 and x.device.type == "cpu" and _positions(x, self.conv.kernel_size, self.stride) <= SMALL_MAP:
            return conv_as_one_product(x, self.weight(), self.conv.bias, self.stride)
        return F.conv2d(x, self.weight(), self.conv.bias, stride=self.stride)


#: float64 convolutions on the CPU with at most this many output positions per image run as one matrix product over the
#: whole batch (the causality check's small images): conv2d's float64 path multiplies image by image, with products
#: as narrow as the image, 2-5x slower there (benchmarks/bench_causality.py --conv); from about 8x8 on it is faster
SMALL_MAP = 16


def _positions(x: torch.Tensor, kernel: tuple[int, int], stride: int) -> int:
    return ((x.shape[2] - kernel[0]) // stride + 1) * ((x.shape[3] - kernel[1]) // stride + 1)


def conv_as_one_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride)`` (no padding) as one product ``[out, C*kh*kw] @ [C*kh*kw, B*positions]``.
    Each output is computed the same way at the same place of batches of the same shape, as the checks need."""
    kh, kw = weight.shape[2:]
    out_h, out_w = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    patches = rearrange(F.unfold(x, (kh, kw), stride=stride), "b k l -> k (b l)")
    out = rearrange(weight.flatten(1) @ patches, "o (b h w) -> b o h w", h=out_h, w=out_w)
    return out if bias is None else out + bias[:, None, None]


@torch.no_grad()
def data_dependent_init(model: nn.Module, *args, **kwargs) -> int:
    """Initialize every weight-normalized :class:`Conv` of ``model`` from one forward pass on a batch of data.

    Call it once, before training and before wrapping the model in DDP. Returns the number of layers initialized.
    """
    layers = [m for m in model.modules() if isinstance(m, Conv) and m.weight_normed]
    handles = [layer.register_forward_hook(_normalize_output) for layer in layers]
    try:
        model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return len(layers)


def _normalize_output(layer: Conv, inputs, output: torch.Tensor) -> torch.Tensor:
    # output = gain * (V * x) / |V| + bias: scaling the gain scales the first term, the bias then removes the mean
    mean = output.mean(dim=(0, 2, 3))
    scale = layer.init_scale / output.var(dim=(0, 2, 3), unbiased=False).add(1e-10).sqrt()
    gain = layer.conv.parametrizations.weight.original0  # [out,1,1,1] for Conv2d, [1,out,1,1] for ConvTranspose2d
    gain.mul_(scale.reshape(gain.shape))
    bias = layer.conv.bias
    if bias is None:
        return output * scale.view(1, -1, 1, 1)
    bias.copy_((bias - mean) * scale)
    return (output - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)


def conv_mask(mask: str, out_channels: int, in_channels: int, kernel_size: int, groups: int) -> torch.Tensor:
    """``[out, in, k, k]`` mask: rows above the centre, the centre row left of the centre, and the centre by channel group."""
    k = kernel_size
    spatial = torch.zeros(k, k)
    spatial[: k // 2, :] = 1
    spatial[k // 2, : k // 2] = 1
    out_group = channel_groups(out_channels, groups)[:, None]
    in_group = channel_groups(in_channels, groups)[None, :]
    centre = (in_group < out_group) if mask == "A" else (in_group <= out_group)
    full = spatial.expand(out_channels, in_channels, k, k).clone()
    full[:, :, k // 2, k // 2] = centre.to(full.dtype)
    return full
