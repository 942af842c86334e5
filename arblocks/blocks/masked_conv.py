"""Masked convolution (van den Oord et al. 2016): mask A for the first layer, mask B after it."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from ..core.block import Block, require_map
from ..core.hookspecs import hookimpl
from ..core.incremental import Reach, conv_at
from ..core.layers import Conv, conv_mask
from ..core.streams import Causal, canonical
from ..spec.errors import BlockError
from .conv import SquareConvConfig


class MaskedConvConfig(SquareConvConfig):
    """Convolution that sees only pixels before its own (mask A) or also its own pixel's earlier-or-same channel groups (mask B)."""

    type: Literal["masked_conv"] = "masked_conv"
    mask: Literal["A", "B"] = Field(
        "B",
        description="A: the centre pixel's channel group g sees input groups < g (use on the raw image). "
        "B: it sees groups <= g (use after a mask-A layer).",
    )


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
