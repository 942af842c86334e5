"""Blocks of the transformer family over an image's positions: token and position embeddings, layer norm, and the
pre-LayerNorm transformer block (causal self-attention + MLP). Positions keep their place in the [B, D, H, W] map;
the attention mask follows the spec's ordering, so any ordering works.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import nn

from ..block import Block, ChannelMixing, Elementwise, require_map
from ..errors import BlockError
from ..hookspecs import hookimpl
from ..ops import ungrouped
from ..spec import BlockConfig
from ..streams import Causal, canonical
from .attention import causal_mask


class TokenEmbeddingConfig(BlockConfig):
    """Learned embedding of each pixel's level (a token), read from the image; `shift` feeds each position the previous token in the ordering."""

    type: Literal["token_embedding"] = "token_embedding"
    channels: int = Field(gt=0, le=65536, description="Embedding width.")
    shift: bool = Field(True, description="Embed the token generated just before each position (a learned start vector at the first), so the output sees only the past.")


class TokenEmbedding(Block):
    Config = TokenEmbeddingConfig
    orderings = None

    def __init__(self, config: TokenEmbeddingConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        if source.channels != 1 or (source.height, source.width) != tuple(ctx.rank.shape):
            raise BlockError("token_embedding reads a one-channel image (one token per pixel) at the image's resolution", field="in")
        self.levels = ctx.image.levels
        self.table = nn.Embedding(self.levels, config.channels)
        if config.shift:
            self.start = nn.Parameter(torch.zeros(config.channels))
            nn.init.normal_(self.start, std=0.02)
            order = torch.argsort(ctx.rank.flatten())  # positions in generation order
            previous = torch.zeros_like(order)
            previous[order[1:]] = order[:-1]  # the position generated just before each one
            self.register_buffer("previous", previous, persistent=False)
            self.register_buffer("first", ctx.rank.flatten() == 0, persistent=False)
        self.output_info = source.with_(channels=config.channels)

    def forward(self, x):
        h, w = x.shape[2:]
        tokens = ((x[:, 0] + 1) * (self.levels - 1) / 2).round().long().clamp(0, self.levels - 1)  # [B, H, W] from [-1, 1]
        tokens = rearrange(tokens, "b h w -> b (h w)")
        if self.config.shift:
            embedded = self.table(tokens[:, self.previous])  # [B, N, D]
            embedded = torch.where(self.first[None, :, None], self.start.to(embedded.dtype), embedded)
        else:
            embedded = self.table(tokens)
        return rearrange(embedded, "b (h w) d -> b d h w", h=h, w=w)

    def causality(self, inputs, aux):
        state = inputs[0]
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        return Causal.PAST if self.config.shift else canonical(ungrouped(state), self.image.channels)


class PositionEmbeddingConfig(BlockConfig):
    """A learned vector per position, added to the input."""

    type: Literal["position_embedding"] = "position_embedding"


class PositionEmbedding(Elementwise):
    Config = PositionEmbeddingConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.table = nn.Parameter(torch.randn(source.channels, source.height, source.width) * 0.01)

    def forward(self, x):
        return x + self.table


class LayerNormConfig(BlockConfig):
    """Layer normalization over each position's channels."""

    type: Literal["layer_norm"] = "layer_norm"
    bias: bool = Field(True, description="Learn a bias besides the gain (Image GPT uses gains only).")


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm over the channel dimension of [B, D, H, W]."""
    return rearrange(F.layer_norm(rearrange(x, "b d h w -> b h w d"), (x.shape[1],), weight, bias), "b h w d -> b d h w")


class LayerNorm(ChannelMixing):
    Config = LayerNormConfig

    def __init__(self, config: LayerNormConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.weight = nn.Parameter(torch.ones(source.channels))
        self.bias = nn.Parameter(torch.zeros(source.channels)) if config.bias else None

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias)


class TransformerBlockConfig(BlockConfig):
    """Pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x)), attending to the current and earlier positions."""

    type: Literal["transformer_block"] = "transformer_block"
    heads: int = Field(8, gt=0, le=256, description="Attention heads (the width must divide evenly).")
    mlp_ratio: int = Field(4, gt=0, le=16, description="Width of the MLP's hidden layer, as a multiple of the block's width.")
    bias: bool = Field(True, description="Biases in the projections and layer norms (Image GPT has none).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention and MLP outputs.")


class TransformerBlock(Block):
    Config = TransformerBlockConfig
    orderings = None

    def __init__(self, config: TransformerBlockConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        width = source.channels
        if width % config.heads:
            raise BlockError(f"{width} channels do not split into {config.heads} heads", field="heads")
        if tuple(ctx.rank.shape) != (source.height, source.width):
            raise BlockError(f"transformer_block works at the image's resolution {tuple(ctx.rank.shape)}", field="in")
        bias = config.bias
        self.ln1 = LayerNorm(LayerNormConfig(bias=bias), [source], {}, ctx)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.ln2 = LayerNorm(LayerNormConfig(bias=bias), [source], {}, ctx)
        self.fc = nn.Linear(width, config.mlp_ratio * width, bias=bias)
        self.fc_out = nn.Linear(config.mlp_ratio * width, width, bias=bias)
        self.register_buffer("attend", causal_mask(ctx.rank, include_current=True), persistent=False)
        self.output_info = source

    def forward(self, x):
        h, w = x.shape[2:]
        seq = rearrange(x, "b d h w -> b (h w) d")
        q, k, v = rearrange(self.qkv(rearrange(self.ln1(x), "b d h w -> b (h w) d")), "b n (three heads c) -> three b heads n c", three=3, heads=self.config.heads)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attend)  # [B, heads, N, c]
        seq = seq + F.dropout(self.proj(rearrange(mixed, "b heads n c -> b n (heads c)")), self.config.dropout, self.training)
        normed = rearrange(self.ln2(rearrange(seq, "b (h w) d -> b d h w", h=h, w=w)), "b d h w -> b (h w) d")
        seq = seq + F.dropout(self.fc_out(F.gelu(self.fc(normed))), self.config.dropout, self.training)
        return rearrange(seq, "b (h w) d -> b d h w", h=h, w=w)

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if state > Causal.PAST:
            raise BlockError(
                f"a transformer block attends to the current position, so its input must see only earlier pixels, but it is '{state.label}'; "
                "feed it a shifted token_embedding",
                field="in",
            )
        return Causal.PAST


@hookimpl
def arblocks_register_blocks(register):
    for cls in (TokenEmbedding, PositionEmbedding, LayerNorm, TransformerBlock):
        register(cls)
