"""Blocks with known leaks that claim to be causal: the harness must catch each one."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import nn

from arblocks import BlockConfig, Elementwise, hookimpl
from arblocks.blocks.masked_conv import MaskedConv, MaskedConvConfig


class CircularMaskedConvConfig(MaskedConvConfig):
    """Masked convolution with circular padding (the top rows see the bottom rows through the wrap)."""

    type: Literal["circular_masked_conv"] = "circular_masked_conv"


class CircularMaskedConv(MaskedConv):
    Config = CircularMaskedConvConfig

    def forward(self, x):
        p = self.padding
        return self.conv(F.pad(x, (p, p, p, p), mode="circular"))


class BatchNormConfig(BlockConfig):
    """BatchNorm2d: in training mode its statistics mix every position and every image of the batch."""

    type: Literal["batch_norm"] = "batch_norm"


class BatchNorm(Elementwise):
    Config = BatchNormConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.norm = nn.BatchNorm2d(inputs[0].channels)

    def forward(self, x):
        return self.norm(x)


class PeekConfig(BlockConfig):
    """Adds the pixel below (a plain future leak)."""

    type: Literal["peek_below"] = "peek_below"


class PeekBelow(Elementwise):
    Config = PeekConfig

    def forward(self, x):
        return x + F.pad(x[:, :, 1:], (0, 0, 0, 1))


class LeakyPlugin:
    @hookimpl
    def arblocks_register_blocks(self, register):
        register(CircularMaskedConv)
        register(BatchNorm)
        register(PeekBelow)


plugin = LeakyPlugin()
