"""Transformer layers over an image as a sequence of pixels or sub-pixels (see :mod:`arblocks.attention.sequence`): layer norm
and the transformer block (masked self-attention + MLP, pre- or post-LayerNorm). Positions keep their place in the
[B, D, H, W] map; the attention mask follows the spec's ordering and the block's attention pattern
(:mod:`arblocks.attention.patterns`), so any ordering and pattern stays causal.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..attention import flex as flex_attention
from ..attention.kernels import MaskedAttention
from ..attention.patterns import attention_mask, frontier_mask, pattern_of
from ..attention.sequence import SUBPIXELS, SequencePositions, from_sequence, sequence_layout, to_sequence
from ..core.block import Block, ChannelMixing, DependencyMask, require_map, require_within_image
from ..core.hookspecs import hookimpl
from ..core.incremental import attend_at, attention_bias
from ..core.ops import dropout
from ..core.streams import Causal, canonical
from ..spec.errors import BlockError
from ..spec.models import BlockConfig, typed_field


#: the MLP's nonlinearities (gelu_sigmoid: Image GPT's sigmoid approximation of GELU)
ACTIVATIONS = {"gelu": F.gelu, "gelu_sigmoid": lambda x: x * torch.sigmoid(1.702 * x), "relu": F.relu}
#: the rms norm's epsilon, Image GPT's
RMS_EPS = 1e-5


class LayerNormConfig(BlockConfig):
    """Layer normalization over each position's channels (each sub-pixel's group of channels in a sub-pixel sequence)."""

    type: Literal["layer_norm"] = "layer_norm"
    bias: bool = Field(True, description="Learn a bias besides the gain (Image GPT uses gains only).")
    normalization: Literal["layer", "rms"] = Field(
        "layer", description="layer: centre and scale by the standard deviation; rms: scale by the root mean square only, x / sqrt(mean(x^2) + 1e-5) (Image GPT's norm; no bias).")
    subpixels: bool = SUBPIXELS


class LayerNorm(ChannelMixing):
    Config = LayerNormConfig
    examples = [{}, {"normalization": "rms", "bias": False}]

    def __init__(self, config: LayerNormConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.per_pixel, width = sequence_layout(source.channels, ctx.image.channels, config.subpixels)
        if config.normalization == "rms" and config.bias:
            raise BlockError("an rms norm has a gain and no bias: set bias to false", field="bias")
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if config.bias else None

    def forward(self, x):
        h, w = x.shape[2:]
        seq = to_sequence(x, self.per_pixel)  # [B, N, D]
        if self.config.normalization == "rms":
            seq = F.rms_norm(seq, self.weight.shape, self.weight, eps=RMS_EPS)
        else:
            seq = F.layer_norm(seq, self.weight.shape, self.weight, self.bias)
        return from_sequence(seq, self.per_pixel, h, w)

    def causality(self, inputs, aux):
        # per sub-pixel, the channel groups stay apart; per pixel, they mix
        return inputs[0] if self.config.subpixels else super().causality(inputs, aux)


class TransformerBlockConfig(BlockConfig):
    """Transformer block: masked multi-head self-attention and an MLP, each in a residual branch with a layer norm before (pre) or after (post); at the image's resolution or a lower one."""

    type: Literal["transformer_block"] = "transformer_block"
    heads: int = Field(8, gt=0, le=256, description="Attention heads (the query/key and value widths must divide evenly).")
    mlp_ratio: float = Field(4, gt=0, le=16, description="Width of the MLP's hidden layer, as a multiple of the block's width.")
    bias: bool = Field(True, description="Biases in the projections and layer norms (Image GPT has none).")
    attention_bias: bool | None = Field(None, description="Biases in the attention projections; defaults to `bias` (the Image Transformer has none there).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the attention and MLP outputs.")
    norm: Literal["pre", "post"] = Field("pre", description="Layer norm at the start of each branch (`pre`, GPT-2) or after each residual sum (`post`, the original Transformer).")
    activation: Literal["gelu", "gelu_sigmoid", "relu"] = Field(
        "gelu", description="The MLP's nonlinearity: gelu (exact), gelu_sigmoid (x * sigmoid(1.702 x), Image GPT's), relu.")
    normalization: Literal["layer", "rms"] = Field(
        "layer", description="The branches' norm: layer, or rms (root mean square only, no centring and no bias: Image GPT's).")
    qk_channels: int | None = Field(None, gt=0, le=65536, description="Width of the queries and keys (Sparse Transformer halves it); defaults to the block's width.")
    pattern: Any = typed_field(
        "attention",
        "Attention pattern: one registered pattern for all heads, or a list that splits the heads into equal groups, one "
        "pattern each. Defaults to full causal attention. Always intersected with the causal order.",
    )
    kernel: Literal["auto", "dense", "flex"] = Field(
        "auto",
        description="How attention is computed (the same function each way). `auto`: only the tiles of the score matrix that the "
        "pattern keeps, when that is under half the scores (local and strided patterns), else the dense masked attention; "
        "`dense`: always the dense masked attention; `flex`: FlexAttention with a block mask from the pattern (compiled; for GPUs: "
        "on the CPU it has no backward pass, so training there takes the `auto` path).",
    )
    recompute: bool = Field(
        False,
        description="Recompute the block's activations in the backward pass instead of keeping them (gradient checkpointing, as the "
        "Sparse Transformer does): much less memory for about one more forward pass.",
    )
    subpixels: bool = SUBPIXELS


class TransformerBlock(Block):
    Config = TransformerBlockConfig
    examples = [{"heads": 2}, {"heads": 1, "pattern": {"type": "local_1d", "block": 4}},
                {"heads": 1, "normalization": "rms", "bias": False, "activation": "gelu_sigmoid"}]  # Image GPT's
    orderings = None

    def __init__(self, config: TransformerBlockConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        require_within_image(source, ctx, "transformer_block")
        self.per_pixel, width = sequence_layout(source.channels, ctx.image.channels, config.subpixels)
        self.qk = config.qk_channels or width
        if width % config.heads:
            raise BlockError(f"the block's {width} channels do not split into {config.heads} heads", field="heads")
        if self.qk % config.heads:  # only when qk_channels was set: it defaults to the width, checked above
            raise BlockError(f"{self.qk} query and key channels do not split into {config.heads} heads", field="qk_channels")
        patterns = config.pattern if isinstance(config.pattern, list) else [config.pattern] if config.pattern else []
        if patterns and config.heads % len(patterns):
            raise BlockError(f"{config.heads} heads do not split into {len(patterns)} pattern groups", field="pattern")
        bias, attention_bias = config.bias, config.bias if config.attention_bias is None else config.attention_bias
        hidden = round(config.mlp_ratio * width)
        if config.normalization == "rms":
            if bias:
                raise BlockError("an rms norm has no bias: set bias to false (Image GPT has none)", field="normalization")
            self.ln1, self.ln2 = nn.RMSNorm(width, eps=RMS_EPS), nn.RMSNorm(width, eps=RMS_EPS)
        else:
            self.ln1, self.ln2 = nn.LayerNorm(width, bias=bias), nn.LayerNorm(width, bias=bias)
        self.qkv = nn.Linear(width, 2 * self.qk + width, bias=attention_bias)
        self.proj = nn.Linear(width, width, bias=attention_bias)
        self.fc = nn.Linear(width, hidden, bias=bias)
        self.fc_out = nn.Linear(hidden, width, bias=bias)
        flex = config.kernel == "flex"
        if flex and not flex_attention.available():
            raise BlockError(f"kernel 'flex' needs torch.nn.attention.flex_attention (torch 2.5 or later); this is torch {torch.__version__}", field="kernel")
        key = json.dumps([[p.model_dump() for p in patterns], config.heads, self.per_pixel, source.shape, source.causal.label, flex])
        if key not in ctx.shared:
            ctx.shared[key] = MaskedAttention(self.mask(patterns, source, ctx), config.heads, max(len(patterns), 1), flex)
        self.attend = ctx.shared[key]  # mask [1 or heads, N, N]
        self.output_info = source

    def mask(self, patterns, source, ctx) -> torch.Tensor:
        """[1 or heads, N, N]: the patterns in the stream's generation order, where every key's frontier lies within the
        output's (:func:`arblocks.attention.patterns.frontier_mask`; at the image's resolution that is the causal order)."""
        seq = SequencePositions.of_image(ctx.order_of(source), self.per_pixel)
        mask = attention_mask([pattern_of(p, ctx.registry) for p in patterns], seq, self.config.heads)
        try:
            target = source.with_(causal=self.causality([source.causal], {}))
        except BlockError:  # the builder reports the state that cannot be causal
            return mask
        return mask & frontier_mask(ctx, [source], target, self.per_pixel)

    def forward(self, x):
        h, w = x.shape[2:]
        seq = to_sequence(x, self.per_pixel)  # [B, N, D]
        if self.config.recompute and torch.is_grad_enabled():
            seq = checkpoint(self.layers, seq, use_reentrant=False)  # the same dropout draws in the recomputation
        else:
            seq = self.layers(seq)
        return from_sequence(seq, self.per_pixel, h, w)

    def dependency_mask(self):
        """Every sequence position reads the positions its heads attend to (itself among them): the MLP, the norms and
        the residual sums work on each position alone."""
        return DependencyMask({0: self.attend.mask.any(0)}, per_pixel=self.per_pixel)

    def layers(self, seq):
        return self.branch(self.branch(seq, self.attention, self.ln1), self.mlp, self.ln2)

    # -- cached sampling: keys and values of every position computed so far --------------------------
    def new_cache(self, batch, device, dtype):
        n, heads = self.attend.mask.shape[-1], self.config.heads
        width = self.ln1.weight.shape[0]
        return {"k": torch.zeros(batch, heads, n, self.qk // heads, device=device, dtype=dtype),
                "v": torch.zeros(batch, heads, n, width // heads, device=device, dtype=dtype)}

    def forward_at(self, region, cache, x):
        p, n, b = self.per_pixel, len(region), x.shape[0]
        key = ("sequence", p, region.groups)  # shared by the blocks of the model at this region
        if key not in region.memo:
            subs = torch.arange(p, device=x.device)
            if p > 1 and region.groups is not None:  # one sub-pixel becomes final: compute only its sequence position
                subs = subs[region.groups[0] : region.groups[0] + 1]
            region.memo[key] = (subs, (region.flat[:, None] * p + subs).flatten())  # [m] sequence positions
        subs, index = region.memo[key]
        values = region.take(x).view(b, p, -1, n).permute(0, 3, 1, 2)  # [B, n, p, D]
        seq = values[:, :, subs].flatten(1, 2) if len(subs) < p else values.flatten(1, 2)  # [B, m, D]
        bias_key = ("bias", id(self.attend), key, b, x.dtype)
        if bias_key not in region.memo:
            region.memo[bias_key] = attention_bias(self.attend.mask[:, index], b, self.config.heads, x.dtype)
        attend = lambda s: self.cached_attention(s, index, cache, region.memo[bias_key])  # noqa: E731
        seq = self.branch(self.branch(seq, attend, self.ln1), self.mlp, self.ln2)
        if len(subs) < p:
            out = seq.new_zeros(b, n, p, seq.shape[-1])
            out[:, :, subs] = seq.unflatten(1, (n, len(subs)))
        else:
            out = seq.view(b, n, p, -1)
        return out.permute(0, 2, 3, 1).reshape(b, -1, n)  # [B, p * D, n]

    def cached_attention(self, seq, index, cache, bias):
        q, k, v = self.qkv(seq).split([self.qk, self.qk, seq.shape[-1]], dim=-1)
        q, k, v = (t.unflatten(-1, (self.config.heads, -1)).transpose(1, 2) for t in (q, k, v))  # [B, heads, m, c]
        cache["k"].index_copy_(2, index, k)
        cache["v"].index_copy_(2, index, v)
        mixed = attend_at(q, cache["k"], cache["v"], bias)
        return self.proj(mixed.transpose(1, 2).flatten(2))

    def branch(self, seq, layer, norm):
        if self.config.norm == "pre":
            return seq + dropout(layer(norm(seq)), self.config.dropout, self.training)
        return norm(seq + dropout(layer(seq), self.config.dropout, self.training))

    def attention(self, seq):
        q, k, v = self.qkv(seq).split([self.qk, self.qk, seq.shape[-1]], dim=-1)
        q, k, v = (t.unflatten(-1, (self.config.heads, -1)).transpose(1, 2) for t in (q, k, v))  # [B, heads, N, c]
        mixed = self.attend(q, k, v, self.config.kernel)
        return self.proj(mixed.transpose(1, 2).flatten(2))  # [B, N, heads * c]

    def mlp(self, seq):
        return self.fc_out(ACTIVATIONS[self.config.activation](self.fc(seq)))

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.subpixels:
            # a sub-pixel attends to itself and earlier sub-pixels, which see no more than it does of its own pixel
            return max(state, Causal.PAST)
        if state > Causal.PAST:
            raise BlockError(
                f"a transformer block attends to the current position, so its input must see only earlier pixels, but it is '{state.label}'; "
                "feed it a shifted token_embedding, or make it a sub-pixel sequence (subpixels: true)",
                field="in",
            )
        return Causal.PAST


@hookimpl
def arblocks_register_blocks(register):
    for cls in (LayerNorm, TransformerBlock):
        register(cls)
