"""Locally masked convolution, positional normalization, and the gated residual block built from them."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, field_validator
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm

from arblocks import Block, BlockConfig, Causal, ChannelMixing
from arblocks.blocks.conv import ConvOutputConfig
from arblocks.core import Conv
from arblocks.core.incremental import patch_index, patch_linear, pointwise_at, read_patches
from arblocks.core.ops import ungrouped
from arblocks.core.streams import canonical, join
from arblocks.spec import BlockError, StreamRefs, stream_field


def location_masks(rank: torch.Tensor, kernel_size: int, dilation: int, mask: str) -> torch.Tensor:
    """[k * k, H * W]: 1 where the tap of a location reads a pixel generated before it (mask B also keeps the centre).

    Taps outside the image read padding and are masked too.
    """
    height, width = rank.shape
    half = kernel_size // 2
    padded = F.pad(rank.double()[None, None], [half * dilation] * 4, value=float("inf"))
    taps = F.unfold(padded, kernel_size, dilation=dilation)[0]  # [k * k, H * W]: the rank each tap reads
    keep = (taps < rank.flatten().double()[None]).double()
    centre = half * kernel_size + half
    keep[centre] = 1.0 if mask == "B" else 0.0
    return keep


class LocallyMaskedConvConfig(ConvOutputConfig):
    """Convolution with a different mask at every location, derived from the spec's generation order (any ordering)."""

    type: Literal["locally_masked_conv"] = "locally_masked_conv"
    kernel_size: int = Field(3, gt=0, le=15, description="Odd kernel size.")
    dilation: int = Field(1, gt=0, le=8, description="Spacing of the taps (the paper's model uses 2 where PixelCNN++ changes resolution).")
    mask: Literal["A", "B"] = Field("B", description="A: a location never reads itself (first layer on the image); B: it reads its own features.")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value):
        if value % 2 == 0:
            raise ValueError(f"must be odd (got {value})")
        return value


class LocallyMaskedConv(Block):
    Config = LocallyMaskedConvConfig
    orderings = None  # its masks follow whatever ordering the spec names

    def __init__(self, config: LocallyMaskedConvConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = inputs[0]
        if source.kind != "map" or (source.height, source.width) != tuple(ctx.rank.shape):
            raise BlockError(f"locally_masked_conv works at the image's resolution {tuple(ctx.rank.shape)}, got {source.describe()}", field="in")
        out = config.channels or source.channels
        self.conv = nn.Conv2d(source.channels, out, config.kernel_size, bias=config.bias, dilation=config.dilation)
        if config.weight_norm:
            apply_weight_norm(self.conv)
        self.register_buffer("masks", location_masks(ctx.rank, config.kernel_size, config.dilation, config.mask).float(), persistent=False)
        self.output_info = source.with_(channels=out)

    def forward(self, x):
        k, d = self.config.kernel_size, self.config.dilation
        patches = F.unfold(x, k, dilation=d, padding=(k // 2) * d)  # [B, C * k * k, H * W]
        patches = rearrange(patches, "b (c taps) n -> b c taps n", taps=k * k) * self.masks.to(x.dtype)
        weight = rearrange(self.conv.weight, "o c kh kw -> o (c kh kw)")
        y = torch.einsum("od,bdn->bon", weight, rearrange(patches, "b c taps n -> b (c taps) n"))
        if self.conv.bias is not None:
            y = y + self.conv.bias[None, :, None]
        return rearrange(y, "b o (h w) -> b o h w", h=x.shape[2])

    def forward_at(self, region, cache, x, transform=None):
        """The output at the region's locations (cached sampling): their patches, each with its own mask."""
        k, d = self.config.kernel_size, self.config.dilation
        key = ("lmconv", k, d, *x.shape[2:])
        if key not in region.memo:  # shared by the layers that read the same patches at this region
            offsets = (torch.arange(k, device=x.device) - k // 2) * d
            region.memo[key] = patch_index(region.rows[:, None] + offsets, region.cols[:, None] + offsets, None, *x.shape[2:])
        patches = read_patches(x, *region.memo[key], transform)  # [B, C, n, k, k]
        masks = rearrange(self.masks[:, region.flat], "(i j) n -> n i j", i=k)  # taps outside the image are masked too
        return patch_linear(patches * masks.to(patches.dtype), self.conv.weight, self.conv.bias)

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state in (Causal.NONE, Causal.FUTURE):
            return state
        if self.config.mask == "B" and state > Causal.PAST:
            raise BlockError(f"mask B reads its own location, which is '{state.label}' here; use mask A on the image", field="mask")
        return Causal.PAST  # only earlier locations (and, for B, its own past-only features); channels mixed


def concat_elu(t: torch.Tensor) -> torch.Tensor:
    return F.elu(torch.cat([t, -t], 1))


def pono(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return (x - x.mean(1, keepdim=True)) / x.var(1, keepdim=True).add(eps).sqrt()


class PonoConfig(BlockConfig):
    """Positional normalization (Li et al. 2019): each position's features normalized by their mean and variance over channels."""

    type: Literal["pono"] = "pono"


class Pono(ChannelMixing):
    Config = PonoConfig

    def forward(self, x):
        return pono(x)


class LmGatedResnetConfig(BlockConfig):
    """PixelCNN++'s gated residual block with locally masked convolutions and PONO (the lmconv paper's layer)."""

    type: Literal["lm_gated_resnet"] = "lm_gated_resnet"
    kernel_size: int = Field(3, gt=0, le=15, description="Odd kernel size of both convolutions.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Channel dropout (Dropout2d) after the first convolution.")
    weight_norm: bool = Field(False, description="Weight-normalize the two convolutions (the paper's CIFAR-10 model uses PONO instead).")
    normalization: Literal["pono", "none"] = Field("pono", description="Feature normalization after the first convolution and of the gate's value half.")
    aux: StreamRefs | None = stream_field("Skip input of the same size: a weight-normalized 1x1 projection of concat_elu(aux) is added after the first convolution.")


class LmGatedResnet(Block):
    Config = LmGatedResnetConfig
    orderings = None
    examples: ClassVar[list[dict]] = [{}]

    def __init__(self, config: LmGatedResnetConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = inputs[0]
        filters = source.channels
        conv = lambda cin, cout: LocallyMaskedConv(
            LocallyMaskedConvConfig(channels=cout, kernel_size=config.kernel_size, weight_norm=config.weight_norm), [source.with_(channels=cin)], {}, ctx
        )
        self.conv_input = conv(2 * filters, filters)
        self.nin_skip = Conv(2 * aux["aux"].channels, filters, 1, weight_norm=True) if "aux" in aux else None
        self.conv_out = conv(2 * filters, 2 * filters)
        self.output_info = source

    def norm(self, x):
        return pono(x) if self.config.normalization == "pono" else x

    def forward(self, x, aux=None):
        h = self.norm(self.conv_input(concat_elu(x)))
        if self.nin_skip is not None:
            h = h + self.nin_skip(concat_elu(aux))
        h = F.dropout2d(concat_elu(h), self.config.dropout, self.training)
        a, b = self.conv_out(h).chunk(2, 1)
        return x + self.norm(a) * torch.sigmoid(b)

    def new_cache(self, batch, device, dtype):
        info = self.output_info  # concat_elu of the first convolution's output, where the second one reads it
        return torch.zeros(batch, 2 * info.channels, info.height, info.width, device=device, dtype=dtype)

    def forward_at(self, region, cache, x, aux=None):
        h = self.norm(self.conv_input.forward_at(region, None, x, transform=concat_elu)[:, :, None])[:, :, 0]  # [B, F, n]
        if self.nin_skip is not None:
            h = h + pointwise_at(self.nin_skip, concat_elu(region.take(aux)))
        region.put(cache, concat_elu(h))  # channel dropout is off when sampling
        a, b = self.conv_out.forward_at(region, None, cache).chunk(2, 1)
        return region.take(x) + self.norm(a[:, :, None])[:, :, 0] * torch.sigmoid(b)

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if state > Causal.PAST and state != Causal.FUTURE:
            raise BlockError(f"the block's mask-B convolutions read their own location, which is '{state.label}' here", field="in")
        # the skip's 1x1 projection, PONO and the mask-B convolution after it mix every channel of the location: a
        # grouped skip ('strict', 'inclusive') reaches every output channel of its own location
        return join(state, *(ungrouped(a) for a in aux.values()))
