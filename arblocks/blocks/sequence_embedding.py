"""Embeddings of an image as a sequence: token embeddings of pixel or sub-pixel levels, and position embeddings
(learned per position, factorized into row + column (+ channel), or sinusoidal). See :mod:`arblocks.attention.sequence`."""

from __future__ import annotations

import math
from typing import Literal

import torch
from einops import rearrange
from pydantic import Field
from torch import nn

from ..attention.sequence import SUBPIXELS, SequencePositions, from_sequence, previous_position, sequence_layout, to_sequence
from ..core.block import Block, DependencyMask, Elementwise, require_map
from ..core.hookspecs import hookimpl
from ..core.model import float_to_levels
from ..core.ops import label_vectors, ungrouped
from ..core.streams import Causal, canonical
from ..spec.errors import BlockError
from ..spec.models import BlockConfig, StreamRefs, stream_field


class TokenEmbeddingConfig(BlockConfig):
    """Learned embedding of each pixel's (or sub-pixel's) level, read from the image; `shift` feeds each position the previous token in the ordering."""

    type: Literal["token_embedding"] = "token_embedding"
    channels: int = Field(gt=0, le=65536, description="Embedding width (per sub-pixel in a sub-pixel sequence).")
    shift: bool = Field(True, description="Embed the token generated just before each position (a learned start vector at the first), so the output sees only the past.")
    subpixels: bool = SUBPIXELS
    tables: Literal["shared", "per_channel"] = Field(
        "shared", description="One table for all channels, or one per channel (Image Transformer); only for sub-pixel sequences."
    )
    start: Literal["learned", "zeros"] = Field("learned", description="What the first position sees with `shift`: a learned vector (Image GPT) or zeros (Image and Sparse Transformers).")
    scale: bool = Field(False, description="Multiply the embeddings by sqrt(channels) (Image Transformer).")
    label: StreamRefs | None = stream_field(
        "Class-label input (a class label, or Distribution Augmentation's transformation choices): its learned vector is added to the start vector "
        "that the first position sees (with `shift`), as Distribution Augmentation's start token."
    )


class TokenEmbedding(Block):
    Config = TokenEmbeddingConfig
    examples = [{"channels": 8}, {"channels": 6, "start": "zeros"}]
    orderings = None

    def __init__(self, config: TokenEmbeddingConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.per_pixel = ctx.image.channels if config.subpixels else 1
        if (source.height, source.width) != tuple(ctx.rank.shape) or source.channels != self.per_pixel:
            wanted = f"the {ctx.image.channels}-channel image (one token per sub-pixel)" if config.subpixels else "a one-channel image (one token per pixel)"
            raise BlockError(f"token_embedding reads {wanted} at the image's resolution, got {source.describe()}", field="in")
        if config.tables == "per_channel" and not config.subpixels:
            raise BlockError("per_channel tables need a sub-pixel sequence (subpixels: true)", field="tables")
        self.levels = ctx.image.levels
        tables = self.per_pixel if config.tables == "per_channel" else 1
        self.table = nn.Embedding(self.levels * tables, config.channels)
        seq = SequencePositions.of_image(ctx.rank, self.per_pixel)
        self.register_buffer("offset", seq.sub * self.levels if tables > 1 else torch.zeros_like(seq.sub), persistent=False)
        if config.shift:
            self.start = nn.Parameter(torch.randn(config.channels) * 0.02) if config.start == "learned" else None
            previous, first = previous_position(seq)
            self.register_buffer("previous", previous, persistent=False)
            self.register_buffer("first", first, persistent=False)
        if "label" in aux:
            if aux["label"].kind != "label" or not config.shift:
                raise BlockError("label must name a class-label input, and it reaches the sequence through the start vector (shift: true)", field="label")
            self.label = nn.Embedding(aux["label"].channels, config.channels)
            nn.init.normal_(self.label.weight, std=0.02)
        else:
            self.label = None
        self.output_info = source.with_(channels=config.channels * self.per_pixel)

    def dependency_mask(self):
        """Each sequence position reads the token before it in the generation order (with ``shift``; the first reads
        none), or its own."""
        n = len(self.offset)
        if not self.config.shift:
            return DependencyMask({0: torch.eye(n, dtype=torch.bool)}, per_pixel=self.per_pixel)
        reads = torch.zeros(n, n, dtype=torch.bool)
        reads[torch.arange(n), self.previous] = ~self.first
        return DependencyMask({0: reads}, per_pixel=self.per_pixel)

    def start_vector(self, embedded: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        """What the first position sees: ``[1 or B, 1, D]``, the learned start (or zeros) plus the label's vector."""
        start = self.start.to(embedded.dtype) if self.start is not None else embedded.new_zeros(embedded.shape[-1])
        if self.label is not None:
            return (start + label_vectors(self.label, label).to(embedded.dtype))[:, None, :]
        return start[None, None, :]

    def forward(self, x, label=None):
        h, w = x.shape[2:]
        tokens = float_to_levels(x, self.levels)  # [B, P, H, W] from [-1, 1]
        embedded = self.table(to_sequence(tokens, self.per_pixel)[..., 0] + self.offset)  # [B, N, D]
        if self.config.scale:
            embedded = embedded * math.sqrt(self.config.channels)
        if self.config.shift:
            embedded = torch.where(self.first[None, :, None], self.start_vector(embedded, label), embedded[:, self.previous])
        return from_sequence(embedded, self.per_pixel, h, w)

    def forward_at(self, region, cache, x, label=None):
        """The embeddings of the region's sequence positions, reading the image's tokens where they lie."""
        p = self.per_pixel
        index = (region.flat[:, None] * p + torch.arange(p, device=x.device)).flatten()  # [m] sequence positions
        read = self.previous[index] if self.config.shift else index  # the position whose token each one embeds
        pixel, sub = read // p, read % p
        values = x[:, sub, pixel // x.shape[3], pixel % x.shape[3]]  # [B, m]
        tokens = float_to_levels(values, self.levels)
        embedded = self.table(tokens + self.offset[read])
        if self.config.scale:
            embedded = embedded * math.sqrt(self.config.channels)
        if self.config.shift:
            embedded = torch.where(self.first[index][None, :, None], self.start_vector(embedded, label), embedded)
        return rearrange(embedded, "b (n p) d -> b (p d) n", p=p)

    def causality(self, inputs, aux):
        state = inputs[0]
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.shift:  # a sub-pixel sees the channels before it: 'strict' (which is 'past' for pixels)
            return canonical(Causal.STRICT if self.config.subpixels else Causal.PAST, self.image.channels)
        return state if self.config.subpixels else canonical(ungrouped(state), self.image.channels)


class PositionEmbeddingConfig(BlockConfig):
    """A vector per position, added to the input: learned, factorized (row + column, + channel in a sub-pixel sequence) or sinusoidal."""

    type: Literal["position_embedding"] = "position_embedding"
    kind: Literal["learned", "factorized", "sinusoidal"] = Field(
        "learned",
        description="`learned`: a free vector per position; `factorized`: the sum of learned row, column and (sub-pixel sequences) "
        "channel vectors (Sparse Transformer); `sinusoidal`: fixed sines and cosines of the position's index (Image Transformer).",
    )
    subpixels: bool = SUBPIXELS


class PositionEmbedding(Elementwise):
    Config = PositionEmbeddingConfig

    def __init__(self, config: PositionEmbeddingConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        per_pixel, width = sequence_layout(source.channels, ctx.image.channels, config.subpixels)
        h, w = source.height, source.width
        if config.kind == "learned":
            self.table = nn.Parameter(torch.randn(source.channels, h, w) * 0.01)
        elif config.kind == "factorized":
            self.rows = nn.Parameter(torch.randn(width, h) * 0.01)
            self.cols = nn.Parameter(torch.randn(width, w) * 0.01)
            self.subs = nn.Parameter(torch.randn(width, per_pixel) * 0.01) if config.subpixels else None
        else:
            self.register_buffer("table", sinusoid(h * w * per_pixel, width, per_pixel, h, w), persistent=False)

    def positions(self) -> torch.Tensor:
        """[P*D, H, W]: the vector added at every position."""
        if self.config.kind != "factorized":
            return self.table
        grid = self.rows[:, :, None] + self.cols[:, None, :]  # [D, H, W]
        if self.subs is None:
            return grid
        return rearrange(grid[:, None] + self.subs[:, :, None, None], "d p h w -> (p d) h w")

    def forward(self, x):
        return x + self.positions().to(x.dtype)

    def dependency_mask(self):
        """Each channel reads itself (a table per position ties the block to its size: the reach alone does not carry
        to the full image)."""
        info, groups = self.output_info, self.image.channels
        return DependencyMask({0: torch.eye(info.height * info.width * groups, dtype=torch.bool)}, per_pixel=groups)

    def forward_at(self, region, cache, x):
        if self.config.kind != "factorized":
            return region.take(x) + self.table[:, region.rows, region.cols].to(x.dtype)
        grid = self.rows[:, region.rows] + self.cols[:, region.cols]  # [D, n]: only the region's vectors
        if self.subs is not None:
            grid = (grid[None] + self.subs.T[:, :, None]).flatten(0, 1)  # [(p d), n]
        return region.take(x) + grid.to(x.dtype)


def sinusoid(length: int, width: int, per_pixel: int, height: int, image_width: int) -> torch.Tensor:
    """Transformer timing signal over the storage index of each position, laid out as a [P*D, H, W] map."""
    half = width // 2
    rates = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))  # [D/2]
    angles = torch.arange(length)[:, None] * rates[None, :]  # [N, D/2]
    signal = torch.cat([angles.sin(), angles.cos(), torch.zeros(length, width - 2 * half)], dim=1)  # [N, D]
    return from_sequence(signal[None], per_pixel, height, image_width)[0]


@hookimpl
def arblocks_register_blocks(register):
    for cls in (TokenEmbedding, PositionEmbedding):
        register(cls)
