"""Plain (unmasked) convolutions: 1x1 mixing of a position's channels, or k x k, strided and transposed ones on streams
that do not depend on the image (conditioning maps, earlier stages' variables: a conditioning network)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field, field_validator

from ..core.block import Block, require_map
from ..core.hookspecs import hookimpl
from ..core.incremental import Reach, conv_at
from ..core.layers import Conv as ConvLayer
from ..core.ops import ungrouped
from ..core.streams import Causal, canonical
from ..spec.errors import BlockError
from ..spec.models import BlockConfig


class ConvOutputConfig(BlockConfig):
    """Fields every convolution block shares (a base for configs, not a block)."""

    channels: int | None = Field(None, gt=0, le=65536, description="Output channels; defaults to the input's.")
    bias: bool = Field(True, description="Add a learned bias.")
    weight_norm: bool = Field(False, description="Weight normalization (a gain per output channel), with data-dependent initialization available.")


class SquareConvConfig(ConvOutputConfig):
    """A convolution with an odd square kernel (a base for configs, not a block)."""

    kernel_size: int = Field(3, gt=0, le=63, description="Odd kernel size (height = width).")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (got {value})")
        return value


class ConvConfig(SquareConvConfig):
    """Unmasked convolution; 1x1 mixes the channels of each position, larger kernels only suit inputs independent of the image."""

    type: Literal["conv"] = "conv"
    kernel_size: int = Field(1, gt=0, le=63, description="Odd kernel size; anything above 1 sees later pixels of the image.")
    stride: Literal[1, 2] = Field(1, description="2 halves the resolution (only on streams that do not depend on the image).")


class Conv(Block):
    Config = ConvConfig
    orderings = None  # 1x1 mixes one position only; larger kernels are refused on image-dependent streams

    def __init__(self, config: ConvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        out_channels = config.channels or source.channels
        self.padding = config.kernel_size // 2
        s = config.stride
        self.conv = ConvLayer(source.channels, out_channels, config.kernel_size, s, bias=config.bias, weight_norm=config.weight_norm)
        self.output_info = source.with_(channels=out_channels, height=-(-source.height // s), width=-(-source.width // s))

    def forward(self, x):
        return self.conv(F.pad(x, [self.padding] * 4))

    def reach(self):
        return Reach.kernel(self.config.kernel_size, self.config.kernel_size)

    def forward_at(self, region, cache, x):
        return conv_at(self.conv, x, region, self.padding, self.padding, self.config.stride)

    def causality(self, inputs, aux):
        state = inputs[0]
        if state == Causal.NONE:
            return state
        if self.config.stride > 1:
            raise BlockError(
                "a strided conv on a stream that depends on the image mixes pixels of different causal times; "
                "use down_shifted_conv or down_right_shifted_conv with stride 2",
                field="stride",
            )
        if self.config.kernel_size > 1:
            raise BlockError(
                f"an unmasked {self.config.kernel_size}x{self.config.kernel_size} convolution on a stream that depends on the image "
                "lets each output see later pixels; use masked_conv, or apply conv only to inputs such as conditioning maps",
                field="kernel_size",
            )
        return canonical(ungrouped(state), self.image.channels)


class DeconvConfig(SquareConvConfig):
    """Transposed convolution doubling the resolution, on streams that do not depend on the image (a conditioning network's upsampling)."""

    type: Literal["deconv"] = "deconv"
    stride: Literal[2] = Field(2, description="Upsampling factor.")


class Deconv(Block):
    Config = DeconvConfig
    orderings = None  # refused on image-dependent streams

    def __init__(self, config: DeconvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        out_channels = config.channels or source.channels
        self.conv = ConvLayer(source.channels, out_channels, config.kernel_size, config.stride, config.bias, config.weight_norm, transposed=True)
        self.output_info = source.with_(channels=out_channels, height=source.height * config.stride, width=source.width * config.stride)

    def forward(self, x):
        s, crop = self.config.stride, self.config.kernel_size // 2
        y = self.conv(x, output_padding=s - 1)  # [B, C, H*s + k - 1, W*s + k - 1]: "same" padding keeps the centre
        return y[:, :, crop : crop + x.shape[2] * s, crop : crop + x.shape[3] * s]

    def reach(self):
        k = self.config.kernel_size  # in input positions around i // stride: a generous bound on the taps that reach an output
        return Reach.kernel(k, k) + Reach(1, 1, 1, 1)

    def causality(self, inputs, aux):
        if inputs[0] != Causal.NONE:
            raise BlockError(
                "deconv spreads each input position over the positions around it, so it takes only streams that do not depend "
                "on the image; upsample image-dependent streams with down_shifted_deconv or down_right_shifted_deconv",
                field="type",
            )
        return Causal.NONE


@hookimpl
def arblocks_register_blocks(register):
    register(Conv)
    register(Deconv)
