"""Per-sub-pixel categorical head (softmax over 2**bits levels) and its 1-bit special case, Bernoulli."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import nn

from ..core.head import PointwiseHead
from ..core.hookspecs import hookimpl
from ..core.layers import Conv, conv_mask
from ..spec.errors import BlockError
from ..spec.models import HeadConfig


def masked_projection(in_channels: int, image_channels: int, per_channel: int, bias: bool = True) -> Conv:
    """1x1 mask-B convolution to ``C * per_channel`` outputs: output group c reads feature groups <= c."""
    out_channels = image_channels * per_channel
    return Conv(in_channels, out_channels, 1, bias=bias, mask=conv_mask("B", out_channels, in_channels, 1, image_channels))


class CategoricalConfig(HeadConfig):
    """Softmax over the 2**bits levels of each sub-pixel, from a masked 1x1 projection of the features."""

    type: Literal["categorical"] = "categorical"
    levels: int | None = Field(None, gt=1, description="Number of levels per sub-pixel; must equal 2**image.bits (it is inferred when left out).")
    bias: bool = Field(True, description="A bias in the projection to the logits (Image GPT has none).")
    projection: Literal["masked", "per_subpixel"] = Field(
        "masked",
        description="`masked`: a 1x1 mask-B projection (sub-pixel c reads feature groups <= c); `per_subpixel`: one linear map, "
        "shared by the channels, from each sub-pixel's own feature group to its logits (sub-pixel sequences, Image Transformer).",
    )


class SubpixelProjection(nn.Module):
    """The same linear map applied to each of the C feature groups of a [B, C * D, H, W] map: [B, C * L, H, W]."""

    def __init__(self, in_channels: int, groups: int, out_per_group: int, bias: bool):
        super().__init__()
        if in_channels % groups:
            raise BlockError(f"{in_channels} feature channels do not split into {groups} sub-pixel groups", field="projection")
        self.groups = groups
        self.linear = nn.Linear(in_channels // groups, out_per_group, bias=bias)

    def forward(self, h):
        grouped = rearrange(h, "b (c d) h w -> b c h w d", c=self.groups)
        return rearrange(self.linear(grouped), "b c h w l -> b (c l) h w")


class Categorical(PointwiseHead):
    Config = CategoricalConfig

    def __init__(self, config, source, image):
        super().__init__(config, source, image)
        if config.levels is not None and config.levels != image.levels:
            raise BlockError(f"levels is {config.levels}, but a {image.bits}-bit image has {image.levels} levels per sub-pixel", field="levels")
        self.levels = image.levels
        if config.projection == "per_subpixel":
            self.project = SubpixelProjection(source.channels, image.channels, self.levels, config.bias)
        else:
            self.project = masked_projection(source.channels, image.channels, self.levels, config.bias)

    def forward(self, h):
        # [B, C * L, H, W] -> [B, C, L, H, W]: channel group c holds the logits of sub-pixel c
        return rearrange(self.project(h), "b (c l) h w -> b c l h w", c=self.image.channels)

    def nll(self, params, x):
        logits = rearrange(params.float(), "b c l h w -> b l c h w")
        return F.cross_entropy(logits, x.long(), reduction="none").flatten(1).sum(1)

    def sample(self, params, generator=None, temperature: float = 1.0):
        probs = rearrange((params.float() / max(temperature, 1e-6)).softmax(2), "b c l h w -> (b c h w) l")
        draws = torch.multinomial(probs, 1, generator=generator)
        b, c, _, h, w = params.shape
        return rearrange(draws, "(b c h w) 1 -> b c h w", b=b, c=c, h=h, w=w)

    def per_dimension(self, params):
        return params


class BernoulliConfig(HeadConfig):
    """Bernoulli per sub-pixel for 1-bit images: one logit each, from a masked 1x1 projection of the features."""

    type: Literal["bernoulli"] = "bernoulli"


class Bernoulli(PointwiseHead):
    Config = BernoulliConfig

    def __init__(self, config, source, image):
        super().__init__(config, source, image)
        if image.bits != 1:
            raise BlockError(f"bernoulli models 1-bit images, but image.bits is {image.bits}; use 'categorical'", field="type")
        self.project = masked_projection(source.channels, image.channels, 1)

    def forward(self, h):
        return self.project(h)  # [B, C, H, W] logits of a 1

    def nll(self, params, x):
        return F.binary_cross_entropy_with_logits(params.float(), x.float(), reduction="none").flatten(1).sum(1)

    def sample(self, params, generator=None, temperature: float = 1.0):
        return torch.bernoulli(torch.sigmoid(params.float() / max(temperature, 1e-6)), generator=generator).long()

    def per_dimension(self, params):
        return rearrange(params, "b c h w -> b c 1 h w")


@hookimpl
def arblocks_register_heads(register):
    register(Categorical)
    register(Bernoulli)
