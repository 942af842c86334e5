"""Shifted convolutions (PixelCNN++, Gated PixelCNN): causal by padding and shifting instead of masking.

* ``down_shifted_conv``: a ``kh x kw`` kernel over rows r-kh+1..r and columns c-kw//2..c+kw//2 (it sees the whole
  current row of its input, so its input must see only rows above: state ``above``); ``shift_down`` moves the output
  one row down, which makes it causal on any input (PixelCNN++'s first layer, Gated PixelCNN's vertical stack).
* ``down_right_shifted_conv``: a ``kh x kw`` kernel over rows r-kh+1..r and columns c-kw+1..c (the current position is
  its bottom-right tap); ``shift_right`` moves the output one column right; ``mask`` masks the bottom-right tap by
  sub-pixel channel group (Gated PixelCNN's horizontal stack on RGB).
* ``down_shifted_deconv`` / ``down_right_shifted_deconv``: their transposed, stride-2 forms for upsampling.
* ``shift``: a plain shift by one row down or one column right.

Strided forms halve the resolution; a position of a lower-resolution stream stands for the block of pixels it covers,
and the causal states refer to that block's top-left pixel.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..core.block import Block, require_map
from ..core.hookspecs import hookimpl
from ..core.incremental import Reach, conv_at, patch_index, patch_linear, read_patches, single_patch
from ..core.layers import Conv
from ..core.ops import channel_groups
from ..core.streams import Causal, canonical
from ..spec.errors import BlockError
from ..spec.models import BlockConfig
from .conv import ConvOutputConfig

KernelSize = tuple[Annotated[int, Field(gt=0, le=15)], Annotated[int, Field(gt=0, le=15)]]


class ShiftedConvConfig(ConvOutputConfig):
    stride: Literal[1, 2] = Field(1, description="2 halves the resolution (downsampling).")
    init_scale: float = Field(1.0, gt=0, le=10, description="Output scale that data-dependent initialization aims for.")


def shift_down(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def shift_right(x):
    return F.pad(x, (1, 0))[:, :, :, :-1]


def shifted_conv_at(conv, x, region, top: int, left: int, stride: int, down: int, right: int):
    """A padded convolution (kernel's top-left tap at ``top, left`` before the position) at the region, its output
    shifted ``down`` rows and ``right`` columns (zeros enter at the edge)."""
    out = conv_at(conv, x, region, top + down * stride, left + right * stride, stride)
    if down or right:
        out = out * ((region.rows >= down) & (region.cols >= right)).to(out.dtype)
    return out


def _out_size(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


class DownShiftedConvConfig(ShiftedConvConfig):
    """Convolution over the rows above and the current row (centred horizontally); `shift_down` makes it see only rows above."""

    type: Literal["down_shifted_conv"] = "down_shifted_conv"
    kernel_size: KernelSize = Field((2, 3), description="[height, width]; the width must be odd.")
    shift_down: bool = Field(False, description="Shift the output down one row, so that row r sees input rows < r only.")


class DownShiftedConv(Block):
    Config = DownShiftedConvConfig

    def __init__(self, config: DownShiftedConvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        kh, kw = config.kernel_size
        if kw % 2 == 0:
            raise BlockError(f"the kernel width must be odd (got {kw})", field="kernel_size")
        out = config.channels or source.channels
        self.padding = (kw // 2, kw // 2, kh - 1, 0)
        self.conv = Conv(source.channels, out, (kh, kw), config.stride, config.bias, config.weight_norm, init_scale=config.init_scale)
        self.output_info = source.with_(channels=out, height=_out_size(source.height, config.stride), width=_out_size(source.width, config.stride))

    def forward(self, x):
        y = self.conv(F.pad(x, self.padding))
        return shift_down(y) if self.config.shift_down else y

    def reach(self):
        kh, kw = self.config.kernel_size
        return Reach(kh - 1 + self.config.shift_down, 0, kw // 2, kw // 2)

    def forward_at(self, region, cache, x):
        kh, kw = self.config.kernel_size
        return shifted_conv_at(self.conv, x, region, kh - 1, kw // 2, self.config.stride, int(self.config.shift_down), 0)

    def causality(self, inputs, aux):
        state = inputs[0]
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.shift_down or state == Causal.ABOVE:
            return Causal.ABOVE
        raise BlockError(
            f"down_shifted_conv sees the whole current row of its input, which is '{state.label}'; "
            "use it on a stream that sees only rows above (state 'above'), or set shift_down",
            field="in",
        )


class DownRightShiftedConvConfig(ShiftedConvConfig):
    """Convolution over the rows above and the pixels to the left, up to the current position; `shift_right` excludes the current position."""

    type: Literal["down_right_shifted_conv"] = "down_right_shifted_conv"
    kernel_size: KernelSize = Field((2, 2), description="[height, width]: rows r-h+1..r, columns c-w+1..c.")
    shift_right: bool = Field(False, description="Shift the output right one column, so that it sees only positions before its own.")
    mask: Literal["none", "A", "B"] = Field(
        "none",
        description="Mask of the current-position tap by sub-pixel channel group: A sees groups < g (first layer on the image), "
        "B groups <= g; none mixes all channels (right for streams that see only earlier pixels).",
    )


class DownRightShiftedConv(Block):
    Config = DownRightShiftedConvConfig

    def __init__(self, config: DownRightShiftedConvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        kh, kw = config.kernel_size
        out = config.channels or source.channels
        mask = None
        if config.mask != "none":
            if config.shift_right or config.stride != 1:
                raise BlockError("a channel mask needs the current position as the bottom-right tap: no shift_right, stride 1", field="mask")
            mask = torch.ones(out, source.channels, kh, kw)
            groups = ctx.image.channels
            out_group = channel_groups(out, groups)[:, None]
            in_group = channel_groups(source.channels, groups)[None, :]
            mask[:, :, -1, -1] = ((in_group < out_group) if config.mask == "A" else (in_group <= out_group)).float()
        self.padding = (kw - 1, 0, kh - 1, 0)
        self.conv = Conv(source.channels, out, (kh, kw), config.stride, config.bias, config.weight_norm, mask, config.init_scale)
        self.output_info = source.with_(channels=out, height=_out_size(source.height, config.stride), width=_out_size(source.width, config.stride))

    def forward(self, x):
        y = self.conv(F.pad(x, self.padding))
        return shift_right(y) if self.config.shift_right else y

    def reach(self):
        kh, kw = self.config.kernel_size
        return Reach(kh - 1, 0, kw - 1 + self.config.shift_right, 0)

    def forward_at(self, region, cache, x):
        kh, kw = self.config.kernel_size
        return shifted_conv_at(self.conv, x, region, kh - 1, kw - 1, self.config.stride, 0, int(self.config.shift_right))

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.shift_right:
            return Causal.ABOVE if state == Causal.ABOVE else Causal.PAST
        if state <= Causal.PAST:
            return state
        mask = self.config.mask
        if mask == "none":
            return canonical(Causal.CURRENT, self.image.channels)
        if state == Causal.CURRENT or (mask == "B" and state == Causal.INCLUSIVE):
            raise BlockError(
                f"mask {mask} on a '{state.label}' stream lets an output see the sub-pixel it predicts; "
                "use mask A on the image (or shift_right)",
                field="mask",
            )
        return Causal.STRICT


class DeconvConfig(ShiftedConvConfig):
    stride: Literal[2] = Field(2, description="Upsampling factor.")


class DownShiftedDeconvConfig(DeconvConfig):
    """Transposed down-shifted convolution: doubles the resolution of a stream that sees only rows above."""

    type: Literal["down_shifted_deconv"] = "down_shifted_deconv"
    kernel_size: KernelSize = Field((2, 3), description="[height, width]; the width must be odd.")


class DownRightShiftedDeconvConfig(DeconvConfig):
    """Transposed down-right-shifted convolution: doubles the resolution of a stream that sees only earlier positions."""

    type: Literal["down_right_shifted_deconv"] = "down_right_shifted_deconv"
    kernel_size: KernelSize = Field((2, 2), description="[height, width].")


class ShiftedDeconv(Block):
    """Both transposed forms: the output keeps the first rows (and the centred or first columns) of the full transposed convolution."""

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        kh, kw = config.kernel_size
        self.centred = config.type == "down_shifted_deconv"
        if self.centred and kw % 2 == 0:
            raise BlockError(f"the kernel width must be odd (got {kw})", field="kernel_size")
        out = config.channels or source.channels
        s = config.stride
        self.conv = Conv(source.channels, out, (kh, kw), s, config.bias, config.weight_norm, init_scale=config.init_scale, transposed=True)
        self.output_info = source.with_(channels=out, height=source.height * s, width=source.width * s)

    def forward(self, x):
        y = self.conv(x, output_padding=self.config.stride - 1)  # [B, C, H*s + kh - 1, W*s + kw - 1]
        h, w = x.shape[2] * self.config.stride, x.shape[3] * self.config.stride
        left = (self.config.kernel_size[1] - 1) // 2 if self.centred else 0
        return y[:, :, :h, left : left + w]

    def reach(self):
        kh, kw = self.config.kernel_size  # in input rows and columns: a generous bound on the taps that reach an output
        return Reach(kh // 2 + 1, 0, kw // 2 + 1, kw // 2 + 1)

    def forward_at(self, region, cache, x):
        """Output (r, c) sums tap (dy, dx) of input (i, j) where s * i + dy = r and s * j + dx = c + left."""
        weight = self.conv.weight()  # [in, out, kh, kw]
        kh, kw = weight.shape[2:]
        s = self.config.stride
        left = (kw - 1) // 2 if self.centred else 0
        key = ("deconv", kh, kw, left, s, *x.shape[2:])
        if key not in region.memo:
            if len(region) == 1:
                r, c = region.box[0], region.box[2] + left
                rows = [(r - dy) // s if (r - dy) % s == 0 else None for dy in range(kh)]
                cols = [(c - dx) // s if (c - dx) % s == 0 else None for dx in range(kw)]
                region.memo[key] = single_patch(rows, cols, *x.shape[2:], x.device)
            else:
                rows = region.rows[:, None] - torch.arange(kh, device=x.device)  # [n, kh]: s * i for every tap
                cols = region.cols[:, None] + left - torch.arange(kw, device=x.device)  # [n, kw]: s * j
                hit = (rows % s == 0)[:, :, None] & (cols % s == 0)[:, None, :]
                region.memo[key] = patch_index(rows.div(s, rounding_mode="floor"), cols.div(s, rounding_mode="floor"), hit, *x.shape[2:])
        return patch_linear(read_patches(x, *region.memo[key]), weight.transpose(0, 1), self.conv.conv.bias)

    def causality(self, inputs, aux):
        state = inputs[0]
        allowed = Causal.ABOVE if self.centred else Causal.PAST
        if state in (Causal.NONE, Causal.FUTURE) or state <= allowed:
            return state
        raise BlockError(f"{self.config.type} needs an input in state '{allowed.label}' or stricter, got '{state.label}'", field="in")


class DownShiftedDeconv(ShiftedDeconv):
    Config = DownShiftedDeconvConfig


class DownRightShiftedDeconv(ShiftedDeconv):
    Config = DownRightShiftedDeconvConfig


class ShiftConfig(BlockConfig):
    """Shift a stream one row down or one column right (zeros enter at the top or left edge)."""

    type: Literal["shift"] = "shift"
    direction: Literal["down", "right"] = Field(description="down: row r gets row r-1; right: column c gets column c-1.")


class Shift(Block):
    Config = ShiftConfig
    examples = [{"direction": "down"}, {"direction": "right"}]

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.output_info = require_map(inputs[0])

    def forward(self, x):
        return shift_down(x) if self.config.direction == "down" else shift_right(x)

    def reach(self):
        return Reach(top=1) if self.config.direction == "down" else Reach(left=1)

    def causality(self, inputs, aux):
        state = inputs[0]
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.direction == "down" or state == Causal.ABOVE:
            return Causal.ABOVE
        return Causal.PAST


@hookimpl
def arblocks_register_blocks(register):
    for cls in (DownShiftedConv, DownRightShiftedConv, DownShiftedDeconv, DownRightShiftedDeconv, Shift):
        register(cls)
