"""Masked convolution (van den Oord et al. 2016): mask A for the first layer, mask B after it."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..block import Block, require_map
from ..errors import BlockError
from ..hookspecs import hookimpl
from ..incremental import Reach, conv_at
from ..layers import Conv
from ..ops import channel_groups
from ..streams import Causal, canonical
from .conv import SquareConvConfig


class MaskedConvConfig(SquareConvConfig):
    """Convolution that sees only pixels before its own (mask A) or also its own pixel's earlier-or-same channel groups (mask B)."""

    type: Literal["masked_conv"] = "masked_conv"
    mask: Literal["A", "B"] = Field(
        "B",
        description="A: the centre pixel's channel group g sees input groups < g (use on the raw image). "
        "B: it sees groups <= g (use after a mask-A layer).",
    )


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


class MaskedConv(Block):
    Config = MaskedConvConfig

    def __init__(self, config: MaskedConvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        out_channels = config.channels or source.channels
        self.padding = config.kernel_size // 2
        mask = conv_mask(config.mask, out_channels, source.channels, config.kernel_size, ctx.image.channels)
        self.conv = Conv(source.channels, out_channels, config.kernel_size, bias=config.bias, weight_norm=config.weight_norm, mask=mask)
        self.output_info = source.with_(channels=out_channels)

    def forward(self, x):
        return self.conv(F.pad(x, [self.padding] * 4))

    def reach(self):
        k = self.config.kernel_size
        return Reach.kernel(k, k, rows_below=False)  # the rows below are masked out

    def forward_at(self, region, cache, x):
        return conv_at(self.conv, x, region, self.padding, self.padding)

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state == Causal.FUTURE:
            return Causal.FUTURE
        if state == Causal.CURRENT:
            raise BlockError(
                "the input's channel groups are mixed (every channel may see every channel of its own pixel), "
                "so no mask can keep the sub-pixel order; keep group-preserving layers (masked 1x1 convs) before this one",
                field="in",
            )
        if self.config.mask == "B" and state == Causal.INCLUSIVE:
            raise BlockError(
                "mask B on a stream that sees its own pixel (the raw image or a mask-B result of it) lets each output "
                "see the pixel it predicts; use mask 'A' for the first layer on the image",
                field="mask",
            )
        if self.config.mask == "A":
            return Causal.STRICT if state >= Causal.STRICT else state
        return state


@hookimpl
def arblocks_register_blocks(register):
    register(MaskedConv)
