"""Blocks with known leaks that claim to be causal: the harness must catch each one."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from arblocks import BlockConfig, DependencyMask, Elementwise, hookimpl
from arblocks.blocks.attention import CausalAttention, CausalAttentionConfig
from arblocks.blocks.masked_conv import MaskedConv, MaskedConvConfig
from arblocks.core.layers import conv_mask
from arblocks.core.streams import Causal


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


# -- leaks that gradients cannot see, and state --------------------------------------------------------------------
# Each is a masked convolution that claims the masked convolution's causality and adds something it must not see.


def below(x):
    """The value one row down (zero on the last row): a future pixel for every position."""
    return F.pad(x[:, :, 1:], (0, 0, 0, 1))


class LeakyConv(MaskedConv):
    """Base of the corpus: a masked convolution plus ``leak(x, out)``."""

    def forward(self, x):
        out = super().forward(x)
        return out + self.leak(x, out)


def leaky_conv(name: str, doc: str, leak, mask: str = "B", **members):
    annotations = {"type": Literal[name], "mask": Literal["A", "B"]}
    config = type(f"{name}_config", (MaskedConvConfig,), {"__annotations__": annotations, "type": name, "mask": mask, "__doc__": doc})
    return type(name, (LeakyConv,), {"Config": config, "leak": leak, "examples": [{"mask": mask}], **members})


def _keep_last_input(self, x, out):
    previous = self.memory if self.memory is not None and self.memory.shape == out.shape else torch.zeros_like(out)
    self.memory = below(x).mean(1, keepdim=True).expand_as(out).detach().clone()
    return previous


class _Remember(LeakyConv):
    """The same memory as python_state_leak's, kept in a buffer."""

    leak = _keep_last_input

    def __init__(self, *args):
        super().__init__(*args)
        self.register_buffer("memory", torch.zeros(1), persistent=False)


CORPUS = [
    leaky_conv("detach_leak", "Adds the pixel below through .detach() (zero gradient).", lambda self, x, out: below(x).detach().mean(1, keepdim=True)),
    leaky_conv("round_leak", "Adds the pixel below through round() (zero gradient).", lambda self, x, out: torch.round(below(x) * 3).mean(1, keepdim=True)),
    leaky_conv("compare_leak", "Adds a comparison of the pixel below (zero gradient).", lambda self, x, out: (below(x) > 0.3).to(x.dtype).mean(1, keepdim=True)),
    leaky_conv("threshold_leak", "relu(pixel below - 0.98): active only when the level below is the top one.",
               lambda self, x, out: F.relu(below(x)[:, :1] - 0.98), mask="A"),
    leaky_conv("level_branch_leak", "A branch taken when the last pixel is at the top level.",
               lambda self, x, out: torch.where((x[:, :1, -1:, -1:] == 1.0), 1.0, 0.0).to(x.dtype), mask="A"),
    leaky_conv("argmax_leak", "Adds the index of the largest channel of the pixel below (integer arithmetic).",
               lambda self, x, out: below(x).argmax(1, keepdim=True).to(x.dtype)),
    leaky_conv("train_only_leak", "Adds the pixel below through .detach(), in training mode only.",
               lambda self, x, out: below(x).detach().mean(1, keepdim=True) if self.training else torch.zeros_like(out[:, :1])),
    leaky_conv("global_max_leak", "Adds the image-wide maximum (which holds future pixels) through .detach().",
               lambda self, x, out: x.detach().amax(dim=(1, 2, 3), keepdim=True)),
    leaky_conv("cross_sample_leak", "Adds the previous image of the batch (its future pixels included).",
               lambda self, x, out: x.detach().roll(1, 0).mean(1, keepdim=True) - x.detach().mean(1, keepdim=True)),
    leaky_conv("python_state_leak", "Keeps the last call's input in a plain attribute and adds it on the next call.",
               _keep_last_input, memory=None),
]


class RememberConfig(MaskedConvConfig):
    """Keeps the last call's input in a buffer and adds it on the next call."""

    type: Literal["buffer_state_leak"] = "buffer_state_leak"


_Remember.Config = RememberConfig
CORPUS.append(_Remember)


class MaskBFirstConfig(MaskedConvConfig):
    """Says mask A (usable as the first layer) but applies mask B: each output sees its own sub-pixel."""

    type: Literal["mask_b_first"] = "mask_b_first"
    mask: Literal["A", "B"] = "A"


class MaskBFirst(MaskedConv):
    Config = MaskBFirstConfig
    examples = [{}]

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.conv.mask.copy_(conv_mask("B", self.conv.mask.shape[0], self.conv.mask.shape[1], config.kernel_size, ctx.image.channels))


CORPUS.append(MaskBFirst)



def far_below_left(x, columns: int = 16):
    """The value one row down and ``columns`` columns left (zero where that falls outside the image): a future pixel
    that only exists on images more than ``columns`` pixels wide."""
    if x.shape[3] <= columns:
        return torch.zeros_like(x)
    return F.pad(x[:, :, 1:, :-columns], (columns, 0, 0, 1))


# a wide dilated tap, reaching a future row 16 columns to the left: invisible on the 8-pixel images `build` checks
CORPUS.append(leaky_conv("wide_tap_leak", "A tap one row down and 16 columns left, beyond the reach it states (its kernel's).",
                         lambda self, x, out: far_below_left(x).mean(1, keepdim=True)))
CORPUS.append(leaky_conv("wide_tap_no_reach", "The same tap in a block that states no reach (so nothing can be assumed about its extent).",
                         lambda self, x, out: far_below_left(x).mean(1, keepdim=True), reach=lambda self: None))

#: how each corpus block leaks its future pixels into a model: used after a first mask-A layer, or as the first layer
FIRST_LAYER = {"threshold_leak", "level_branch_leak", "mask_b_first"}
#: whose leak needs an image more than 16 pixels wide
WIDE = {"wide_tap_leak", "wide_tap_no_reach"}


# -- at a lower resolution, and under other orderings --------------------------------------------------------------
class AttentionOneAheadConfig(CausalAttentionConfig):
    """causal_attention that also attends to the next position of its stream, at whatever resolution it works."""

    type: Literal["attention_one_ahead"] = "attention_one_ahead"


class AttentionOneAhead(CausalAttention):
    Config = AttentionOneAheadConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        if self.leaks_at(inputs[0], ctx):
            order = ctx.order_of(inputs[0]).flatten()
            self.attend = self.attend | (order[None, :] == order[:, None] + 1)  # key = the query's next position
            self.has_past = self.attend.any(-1, keepdim=True).to(self.has_past.dtype)

    def leaks_at(self, query, ctx) -> bool:
        return True


class AttentionAheadWhenDownsampledConfig(CausalAttentionConfig):
    """attention_one_ahead's leak only on streams smaller than the image: a bug in lower-resolution handling alone."""

    type: Literal["attention_ahead_when_downsampled"] = "attention_ahead_when_downsampled"


class AttentionAheadWhenDownsampled(AttentionOneAhead):
    Config = AttentionAheadWhenDownsampledConfig

    def leaks_at(self, query, ctx) -> bool:
        return (query.height, query.width) != (ctx.image.height, ctx.image.width)


class AttentionAheadAtFullSizeConfig(CausalAttentionConfig):
    """States causal_attention's clean dependency mask, but on streams wider than 16 positions (its 'fast kernel') it
    also attends to the next position: a leak that no image the check affords shows."""

    type: Literal["attention_ahead_at_full_size"] = "attention_ahead_at_full_size"


class AttentionAheadAtFullSize(CausalAttention):
    Config = AttentionAheadAtFullSizeConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        order = ctx.order_of(inputs[0]).flatten()
        self.register_buffer("fast", self.attend | (order[None, :] == order[:, None] + 1), persistent=False)

    def forward(self, query, key, value):
        if query.shape[3] <= 16:
            return super().forward(query, key, value)
        h, w = query.shape[2:]
        q, k, v = (rearrange(t, "b (heads c) h w -> b heads (h w) c", heads=self.config.heads) for t in (query, key, value))
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=self.fast) * self.fast.any(-1, keepdim=True).to(q.dtype)
        return rearrange(mixed, "b heads (h w) c -> b (heads c) h w", h=h, w=w)


class AttentionMaskUnderstatedConfig(CausalAttentionConfig):
    """attention_one_ahead whose dependency mask states causal_attention's clean one: the block reads outside the
    matrix it gives (the proof through the mask must not take the matrix on trust)."""

    type: Literal["attention_mask_understated"] = "attention_mask_understated"


class AttentionMaskUnderstated(AttentionOneAhead):
    Config = AttentionMaskUnderstatedConfig

    def dependency_mask(self):
        stated = super().dependency_mask()
        order = torch.arange(len(self.attend))  # raster, at the image's resolution
        ahead = order[None, :] == order[:, None] + 1
        return DependencyMask({k: m & ~ahead if k != 0 else m for k, m in stated.reads.items()})


class MaskedGlobalMeanConfig(BlockConfig):
    """Adds the mean over every position and states it in a dependency mask (all True): honest, and not causal."""

    type: Literal["masked_global_mean"] = "masked_global_mean"


class MaskedGlobalMean(Elementwise):
    Config = MaskedGlobalMeanConfig

    def reach(self):
        return None

    def forward(self, x):
        return x + x.mean((2, 3), keepdim=True)

    def dependency_mask(self):
        info = self.output_info
        return DependencyMask({0: torch.ones(info.height * info.width, info.height * info.width, dtype=torch.bool)})


class RowsAboveMeanConfig(BlockConfig):
    """Each position gets the mean of every pixel in the rows above it: truly state 'above', under any ordering."""

    type: Literal["rows_above_mean"] = "rows_above_mean"


class RowsAboveMean(Elementwise):
    Config = RowsAboveMeanConfig

    def reach(self):
        return None

    def forward(self, x):
        rows = x.mean(3, keepdim=True).cumsum(2) / torch.arange(1, x.shape[2] + 1, dtype=x.dtype)[:, None]  # [B, C, H, 1]
        above = F.pad(rows[:, :, :-1], (0, 0, 1, 0))  # the mean over the rows strictly above
        return above.expand_as(x)

    def causality(self, inputs, aux):
        return Causal.ABOVE


class LeakyPlugin:
    @hookimpl
    def arblocks_register_blocks(self, register):
        register(CircularMaskedConv)
        register(BatchNorm)
        register(PeekBelow)
        register(AttentionOneAhead)
        register(AttentionAheadWhenDownsampled)
        register(RowsAboveMean)
        register(AttentionAheadAtFullSize)
        register(AttentionMaskUnderstated)
        register(MaskedGlobalMean)
        for block in CORPUS:
            register(block)


plugin = LeakyPlugin()


class Float32PeekConfig(BlockConfig):
    """Clean in float64; its 'fast path' for float32 adds a trace of the pixel below (a leak the float64 check cannot see)."""

    type: Literal["float32_peek"] = "float32_peek"


class Float32Peek(Elementwise):
    Config = Float32PeekConfig

    def forward(self, x):
        if x.dtype == torch.float64:  # the reference path
            return x
        return x + 1e-3 * F.pad(x[:, :, 1:], (0, 0, 0, 1))


class Bf16PeekConfig(BlockConfig):
    """Clean in float64 and float32; under bfloat16 autocast it adds a trace of the pixel below."""

    type: Literal["bf16_peek"] = "bf16_peek"


class Bf16Peek(Elementwise):
    Config = Bf16PeekConfig

    def forward(self, x):
        if not torch.is_autocast_enabled(x.device.type):
            return x
        return x + 1e-2 * F.pad(x[:, :, 1:], (0, 0, 0, 1))


class PrecisionLeaksPlugin:
    """Leaks that only a low-precision path has (registered apart from LeakyPlugin's corpus)."""

    @hookimpl
    def arblocks_register_blocks(self, register):
        register(Float32Peek)
        register(Bf16Peek)
