"""Attention patterns: which positions of a sequence a query may attend to.

A pattern type subclasses :class:`AttentionPattern`, has a ``Config`` (subclass of :class:`PatternConfig`) with a
``type`` Literal, and gives ``allowed(seq)``: an ``[N, N]`` boolean matrix over the positions of a
:class:`SequencePositions` (True: query ``i`` may attend to key ``j``). Patterns say nothing about causality: the blocks
that use them intersect every pattern with the causal order (keys no later than the query in the generation order) and
let every query attend to itself, so no pattern can make a model see the future. Patterns compose with ``union`` and
``intersection``, and a block may give each head its own pattern (Sparse Transformer's two heads).

Positions are the image's pixels in a pixel sequence, or its sub-pixels (channels as positions) in a sub-pixel sequence.
``step`` is a position's place in the generation order; ``row``/``col`` are its pixel's coordinates.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from einops import rearrange, repeat
from pydantic import Field, NonNegativeInt, PositiveInt

from ..core.hookspecs import hookimpl
from ..core.registry import base_of
from ..core.streams import Causal, StreamInfo
from ..spec.errors import BlockError
from ..spec.models import Config, typed_field
from .sequence import SequencePositions


class PatternConfig(Config):
    type: str


@base_of("attention")
class AttentionPattern:
    """Base class of attention patterns; ``registry`` builds nested patterns of composite ones."""

    Config: ClassVar[type[PatternConfig]]

    def __init__(self, config: PatternConfig, registry: Any = None):
        self.config = config

    def allowed(self, seq: SequencePositions) -> torch.Tensor:
        raise NotImplementedError


def pattern_of(config: PatternConfig, registry: Any) -> AttentionPattern:
    return registry.attention_patterns[config.type].cls(config, registry)


def attention_mask(patterns: list[AttentionPattern], seq: SequencePositions, heads: int) -> torch.Tensor:
    """``[P, N, N]`` bool, the SDPA mask (True: attend) for P = 1 (one pattern, or none: full causal) or P = heads.

    Each pattern is intersected with the causal order and joined with the diagonal. With fewer patterns than heads,
    the heads are split into equal groups, one per pattern, and the masks are repeated per head."""
    causal = seq.step[None, :] <= seq.step[:, None]
    if not patterns:
        return causal[None]
    self_only = torch.eye(len(seq), dtype=torch.bool)
    masks = torch.stack([(checked(p, p.allowed(seq), len(seq)) & causal) | self_only for p in patterns])
    return masks if len(patterns) == 1 else masks.repeat_interleave(heads // len(patterns), dim=0)


def frontier_mask(ctx: Any, sources: list[StreamInfo], target: StreamInfo, per_pixel: int = 1) -> torch.Tensor:
    """``[N, N]`` bool over a stream's positions in sequence storage order (``(h w c)``): may query ``i`` attend to key
    ``j``, i.e. does everything the key's ``sources`` may depend on at ``j`` lie within what the output, in state
    ``target``, may depend on at ``i``? Compares the streams' frontiers (:meth:`arblocks.core.block.BuildContext.frontier`),
    so it holds at any resolution, under any ordering and for any state of the keys and values. A stream that already
    depends on the future gives no constraint here: the builder rejects it with its own message."""
    streams = [*sources, target]
    n = target.height * target.width * per_pixel
    if any(s.causal == Causal.FUTURE for s in streams):
        return torch.ones(n, n, dtype=torch.bool)

    def per_position(info: StreamInfo) -> torch.Tensor:  # [N]: the frontier of each sequence position
        times = ctx.frontier(info)  # [G, h, w]
        if per_pixel > 1 and len(times) == per_pixel:  # a sub-pixel sequence over a grouped state: one group per sub-pixel
            return rearrange(times, "c h w -> (h w c)")
        return repeat(times.amax(0), "h w -> (h w c)", c=per_pixel)

    keys = torch.stack([per_position(s) for s in sources]).amax(0)
    return keys[None, :] <= per_position(target)[:, None]


def checked(pattern: AttentionPattern, allowed: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or allowed.shape != (n, n):
        got = f"{allowed.dtype} {tuple(allowed.shape)}" if isinstance(allowed, torch.Tensor) else type(allowed).__name__
        raise BlockError(f"attention pattern '{pattern.config.type}' must give a bool [{n}, {n}] tensor, got {got}", field="pattern")
    return allowed


class FullConfig(PatternConfig):
    """Every earlier position: full causal attention."""

    type: Literal["full"] = "full"


class Full(AttentionPattern):
    Config = FullConfig

    def allowed(self, seq):
        return torch.ones(len(seq), len(seq), dtype=torch.bool)


class Local1dConfig(PatternConfig):
    """Image Transformer's local 1D attention: a query block attends to itself and the blocks before it.

    The sequence, in generation order, is cut into query blocks of `block` positions; a query attends to its own block
    and to the `memory_blocks` blocks before it."""

    type: Literal["local_1d"] = "local_1d"
    block: PositiveInt = Field(description="Length of a query block, in sequence positions.")
    memory_blocks: NonNegativeInt = Field(1, description="Earlier blocks each query block also attends to.")


class Local1d(AttentionPattern):
    Config = Local1dConfig
    examples: ClassVar[list[dict]] = [{"block": 7}, {"block": 4, "memory_blocks": 2}]

    def allowed(self, seq):
        block = seq.step // self.config.block
        behind = block[:, None] - block[None, :]
        return (behind >= 0) & (behind <= self.config.memory_blocks)


class Local2dConfig(PatternConfig):
    """Image Transformer's local 2D attention: a rectangular query block attends to itself and a flange around it.

    The image is cut into query blocks of `query_shape` pixels; a query attends to its block and a memory flange of rows
    above it and columns on either side (every sub-pixel of those pixels)."""

    type: Literal["local_2d"] = "local_2d"
    query_shape: tuple[PositiveInt, PositiveInt] = Field(description="[rows, columns] of a query block, in pixels.")
    memory_flange: tuple[NonNegativeInt, NonNegativeInt] = Field(description="[rows above, columns left and right] of the memory around a query block.")


class Local2d(AttentionPattern):
    Config = Local2dConfig
    examples: ClassVar[list[dict]] = [{"query_shape": [2, 3], "memory_flange": [1, 1]}]

    def allowed(self, seq):
        (qh, qw), (fh, fw) = self.config.query_shape, self.config.memory_flange
        top, left = (seq.row // qh) * qh, (seq.col // qw) * qw  # [N] corner of each query's block
        rows = (seq.row[None, :] >= top[:, None] - fh) & (seq.row[None, :] < top[:, None] + qh)
        cols = (seq.col[None, :] >= left[:, None] - fw) & (seq.col[None, :] < left[:, None] + qw + fw)
        return rows & cols


PART = Field("both", description="Which of the two heads' patterns: `both` (their union, one merged head) or one of them.")


class StridedConfig(PatternConfig):
    """Sparse Transformer's strided attention: the previous l positions, and every l-th position before.

    With l the length of an image row in positions, the two parts are the query's row and its column. Give them to
    two groups of heads with a list of two patterns, or to one head with `part: both`."""

    type: Literal["strided"] = "strided"
    stride: PositiveInt = Field(description="The stride l, in sequence positions.")
    part: Literal["both", "local", "stride"] = PART


class Strided(AttentionPattern):
    Config = StridedConfig
    examples: ClassVar[list[dict]] = [{"stride": 5}, {"stride": 15, "part": "stride"}]

    def allowed(self, seq):
        behind = seq.step[:, None] - seq.step[None, :]
        local = (behind >= 0) & (behind <= self.config.stride)
        strided = behind.remainder(self.config.stride) == 0
        return {"local": local, "stride": strided, "both": local | strided}[self.config.part]


class FixedConfig(PatternConfig):
    """Sparse Transformer's fixed attention: the query's own block of l positions, and the summary cells of every block.

    The summary cells are the last `summary` positions of each block."""

    type: Literal["fixed"] = "fixed"
    stride: PositiveInt = Field(description="Block length l, in sequence positions.")
    summary: PositiveInt = Field(1, description="Summary positions c at the end of each block.")
    part: Literal["both", "block", "summary"] = PART


class Fixed(AttentionPattern):
    Config = FixedConfig
    examples: ClassVar[list[dict]] = [{"stride": 6, "summary": 2}]

    def allowed(self, seq):
        block = seq.step // self.config.stride
        same_block = block[:, None] == block[None, :]
        summary = (seq.step % self.config.stride >= self.config.stride - self.config.summary)[None, :].expand(len(seq), -1)
        return {"block": same_block, "summary": summary, "both": same_block | summary}[self.config.part]


class UnionConfig(PatternConfig):
    """Positions allowed by any of the patterns."""

    type: Literal["union"] = "union"
    patterns: Any = typed_field("attention", "The patterns joined.", default=...)


class IntersectionConfig(PatternConfig):
    """Positions allowed by all of the patterns."""

    type: Literal["intersection"] = "intersection"
    patterns: Any = typed_field("attention", "The patterns intersected.", default=...)


class Composite(AttentionPattern):
    """A pattern made of other patterns, combined position by position."""

    def __init__(self, config, registry=None):
        super().__init__(config, registry)
        parts = config.patterns if isinstance(config.patterns, list) else [config.patterns]
        self.parts = [pattern_of(p, registry) for p in parts]

    @staticmethod
    def combine(masks: torch.Tensor) -> torch.Tensor:  # [P, N, N] -> [N, N]
        raise NotImplementedError

    def allowed(self, seq):
        return self.combine(torch.stack([p.allowed(seq) for p in self.parts]))


class Union(Composite):
    Config = UnionConfig
    examples: ClassVar[list[dict]] = [{"patterns": [{"type": "local_1d", "block": 5}, {"type": "strided", "stride": 15, "part": "stride"}]}]

    @staticmethod
    def combine(masks):
        return masks.any(0)


class Intersection(Composite):
    Config = IntersectionConfig
    examples: ClassVar[list[dict]] = [{"patterns": [{"type": "local_1d", "block": 9}, {"type": "strided", "stride": 5}]}]

    @staticmethod
    def combine(masks):
        return masks.all(0)


@hookimpl
def arblocks_register_attention_patterns(register):
    for cls in (Full, Local1d, Local2d, Strided, Fixed, Union, Intersection):
        register(cls)
