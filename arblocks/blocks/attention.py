"""Causal attention over the positions of an image (PixelSNAIL, Chen et al. 2018).

Queries come from the ``in`` stream, keys and values from the ``key`` and ``value`` streams (already projected: in
PixelSNAIL by 1x1 gated resnets over the features, the raw image and the background). Every position attends to the
positions before it in the spec's ordering. Because the keys and values may hold the raw image, the current position stays
hidden unless ``include_current`` is set (for keys and values that see only earlier pixels themselves). On a lower-resolution stream (a U-Net's
8x8 level) a position stands for its block of pixels and comes in the order of the block's earliest pixel; a key is
attended only where everything it may depend on lies before that pixel (the streams' frontiers,
:func:`arblocks.attention.patterns.frontier_mask`), so the statement holds at any resolution. The first
position has nothing to attend to: its output is zero, never NaN. Attention runs through
``torch.nn.functional.scaled_dot_product_attention`` with a boolean mask buffer (for SDPA, True means *attend*).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field

from ..attention.patterns import frontier_mask
from ..core.block import Block, DependencyMask, require_map, require_within_image
from ..core.hookspecs import hookimpl
from ..core.incremental import attend_at, attention_bias
from ..core.ops import ungrouped
from ..core.streams import Causal, canonical, join
from ..spec.errors import BlockError
from ..spec.models import BlockConfig, StreamRefs, stream_field


class CausalAttentionConfig(BlockConfig):
    """Multi-head attention of every position over the earlier positions of the image (queries from `in`, keys and values from `key` and `value`), at the image's resolution or a lower one (a U-Net's 8x8 level: positions in the order of their blocks' first pixels)."""

    type: Literal["causal_attention"] = "causal_attention"
    key: StreamRefs | None = stream_field("Keys: a stream of the same size as the queries with the same number of channels.")
    value: StreamRefs | None = stream_field("Values: a stream of the same size; its channels are the output's.")
    heads: int = Field(1, gt=0, le=64, description="Number of heads; the query, key and value channels are split evenly between them.")
    include_current: bool = Field(
        False,
        description="Also attend to the current position. Only causal when the keys and values see nothing of it (state 'past'); "
        "PixelSNAIL's keys hold the raw image, so it leaves this off.",
    )


def causal_mask(rank: torch.Tensor, include_current: bool) -> torch.Tensor:
    """[N, N] bool over the raster-flattened positions of a stream: may query i attend to key j, i.e. does j come before
    i in the stream's generation order (or is it i, with ``include_current``)? True means attend, the SDPA convention."""
    r = rank.flatten()
    return (r[None, :] <= r[:, None]) if include_current else (r[None, :] < r[:, None])


class CausalAttention(Block):
    Config = CausalAttentionConfig
    examples = [{"key": "h", "value": "h"}, {"key": "h", "value": "h", "heads": 2, "include_current": True}]
    orderings = None  # the mask follows the spec's ordering

    def __init__(self, config: CausalAttentionConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        query = require_map(inputs[0])
        if "key" not in aux or "value" not in aux:
            raise BlockError("causal_attention needs both a key and a value stream", field="key" if "key" not in aux else "value")
        key, value = require_map(aux["key"], "key", "key"), require_map(aux["value"], "value", "value")
        for name, info in (("key", key), ("value", value)):
            if (info.height, info.width) != (query.height, query.width):
                raise BlockError(f"{name} must have the queries' size {query.height}x{query.width}, got {info.describe()}", field=name)
        if key.channels != query.channels:
            raise BlockError(f"keys and queries need the same channels, got {key.channels} and {query.channels}", field="key")
        for name, channels in (("in", query.channels), ("value", value.channels)):
            if channels % config.heads:
                raise BlockError(f"{channels} channels do not split into {config.heads} heads", field=name)
        require_within_image(query, ctx, "causal_attention")
        # positions in the generation order of the pixels they stand for, keys only where all they see is in the output's past
        mask = causal_mask(ctx.order_of(query), config.include_current)
        mask &= frontier_mask(ctx, [key, value], query.with_(causal=Causal.PAST))
        has_past = mask.any(-1, keepdim=True)  # [N, 1]
        # a query with nothing to attend to (the first position) attends to itself and is then zeroed: no NaN, no gradient
        self.register_buffer("attend", mask | (~has_past & torch.eye(len(mask), dtype=torch.bool)), persistent=False)
        self.register_buffer("has_past", has_past.float(), persistent=False)
        self.output_info = query.with_(channels=value.channels)

    def forward(self, query, key, value):
        h, w = query.shape[2:]
        q, k, v = (rearrange(t, "b (heads c) h w -> b heads (h w) c", heads=self.config.heads) for t in (query, key, value))
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attend) * self.has_past.to(q.dtype)  # [B, heads, N, c]
        return rearrange(mixed, "b heads (h w) c -> b (heads c) h w", h=h, w=w)

    def dependency_mask(self):
        """Each output reads its own query and the keys and values it attends to (none at the first position)."""
        attended = self.attend & self.has_past.bool()  # [N, N]
        own = torch.eye(len(attended), dtype=torch.bool, device=attended.device)
        return DependencyMask({0: own, "key": attended, "value": attended})

    def forward_at(self, region, cache, query, key, value):
        """Queries at the region over the full key and value buffers (the sampler's caches of those streams)."""
        heads = self.config.heads
        q = rearrange(region.take(query), "b (heads c) n -> b heads n c", heads=heads)
        k, v = (rearrange(t, "b (heads c) h w -> b heads (h w) c", heads=heads) for t in (key, value))
        flat = region.flat
        bias = attention_bias(self.attend[flat][None], q.shape[0], heads, q.dtype)
        mixed = attend_at(q, k, v, bias) * self.has_past[flat].to(q.dtype)
        return rearrange(mixed, "b heads n c -> b (heads c) n")

    def causality(self, inputs, aux):
        # every output channel is weighted by scores computed from all of the query's channels: its sub-pixel groups mix
        query = canonical(ungrouped(inputs[0]), self.image.channels)
        seen = join(aux["key"], aux["value"])
        if self.config.include_current:
            if canonical(seen, self.image.channels) > Causal.PAST:
                raise BlockError(
                    f"with include_current, keys and values must see only earlier pixels, but they are '{seen.label}'",
                    field="include_current",
                )
            return join(query, seen)
        if seen == Causal.FUTURE:
            return Causal.FUTURE
        # each position mixes the keys and values of earlier positions only: whatever they see is in its past
        return join(query, Causal.PAST if seen != Causal.NONE else Causal.NONE)


@hookimpl
def arblocks_register_blocks(register):
    register(CausalAttention)
