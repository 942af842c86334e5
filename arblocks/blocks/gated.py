"""Gated blocks: the gate of Gated PixelCNN, and PixelCNN++'s gated residual block."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field
from torch import nn

from ..core.block import Block, require_map
from ..core.hookspecs import hookimpl
from ..core.incremental import Reach, conv_at, pointwise_at
from ..core.layers import Conv
from ..core.ops import dropout, label_vectors, ungrouped
from ..core.streams import Causal, canonical, join
from ..spec.errors import BlockError
from ..spec.models import BlockConfig, StreamRefs, stream_field
from .shifted_conv import KernelSize


def split_gate(z: torch.Tensor, groups: int) -> torch.Tensor:
    """tanh(a) * sigmoid(b) of the two halves of each sub-pixel group's channels."""
    a, b = rearrange(z, "b (g two c) h w -> two b (g c) h w", g=groups, two=2)
    return torch.tanh(a) * torch.sigmoid(b)


def check_conditioning(aux: dict, size: tuple[int, int]) -> None:
    label, cond = aux.get("label"), aux.get("cond")
    if label is not None and label.kind != "label":
        raise BlockError(f"label must name a class-label input, got a {label.describe()} map", field="label")
    if cond is not None and (cond.kind != "map" or (cond.height, cond.width) != size):
        raise BlockError(f"cond must be a feature map of size {size[0]}x{size[1]}, got {cond.describe()}", field="cond")


class GateConfig(BlockConfig):
    """Gated activation tanh(a) * sigmoid(b) of the two halves of the channels (Gated PixelCNN), with optional conditioning inside the gate.

    For an image of C channels the halves are taken within each sub-pixel group when the channel count is a multiple
    of 2C, which keeps the groups apart; otherwise the plain halves are taken and the groups are mixed.
    """

    type: Literal["gate"] = "gate"
    label: StreamRefs | None = stream_field("Class-label input: a learned per-class bias (an embedding) is added before the gate.")
    cond: StreamRefs | None = stream_field("Conditioning map of the same size: a 1x1 convolution of it is added before the gate.")


class Gate(Block):
    Config = GateConfig
    orderings = None

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        if source.channels % 2:
            raise BlockError(f"the gate splits the channels in two halves: {source.channels} is odd", field="in")
        # group by group when the channels allow it (keeps the sub-pixel groups), else plain halves (mixes them)
        self.groups = ctx.image.channels if source.channels % (2 * ctx.image.channels) == 0 else 1
        check_conditioning(aux, (source.height, source.width))
        self.label = nn.Embedding(aux["label"].channels, source.channels) if "label" in aux else None
        self.cond = Conv(aux["cond"].channels, source.channels, 1) if "cond" in aux else None
        self.output_info = source.with_(channels=source.channels // 2)

    def forward(self, x, label=None, cond=None):
        if self.label is not None:
            x = x + label_vectors(self.label, label)[:, :, None, None]
        if self.cond is not None:
            x = x + self.cond(cond)
        return split_gate(x, self.groups)

    def reach(self):
        return Reach()

    def causality(self, inputs, aux):
        state = join(inputs[0], *aux.values())
        return state if self.groups == self.image.channels else canonical(ungrouped(state), self.image.channels)


class GatedResnetConfig(BlockConfig):
    """PixelCNN++ gated residual block: x + a * sigmoid(b), [a, b] = conv(dropout(f(conv(f(x)) + nin(f(aux))))) (+ a class bias)."""

    type: Literal["gated_resnet"] = "gated_resnet"
    conv: Literal["down_shifted", "down_right_shifted", "nin", "centred"] = Field(
        "down_right_shifted",
        description="The convolution: down_shifted for a stream of rows above, down_right_shifted for one of earlier pixels, nin (1x1), "
        "centred (a kernel around the position in every direction) for streams that do not depend on the image, such as a conditioning network's.",
    )
    kernel_size: KernelSize | None = Field(None, description="[height, width]; defaults to [2, 3] (down_shifted), [2, 2] (down_right_shifted), [1, 1] (nin), [3, 3] (centred).")
    nonlinearity: Literal["concat_elu", "elu", "relu"] = Field("concat_elu", description="The nonlinearity f.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability after the first convolution.")
    weight_norm: bool = Field(True, description="Weight normalization of every convolution, with data-dependent initialization available.")
    aux: StreamRefs | None = stream_field("Auxiliary input of the same size (a list is concatenated): nin(f(aux)) is added after the first convolution.")
    label: StreamRefs | None = stream_field("Class-label input: a learned per-class vector (no bias, initialized N(0, 0.05) as in PixelCNN++) is added before the gate.")


DEFAULT_KERNELS = {"down_shifted": (2, 3), "down_right_shifted": (2, 2), "nin": (1, 1), "centred": (3, 3)}


def _padding(conv: str, kernel: tuple[int, int]) -> tuple[int, int, int, int]:
    kh, kw = kernel
    if conv == "centred":
        return (kw // 2, kw // 2, kh // 2, kh // 2)
    if conv == "down_shifted":
        return (kw // 2, kw // 2, kh - 1, 0)
    return (kw - 1, 0, kh - 1, 0)


class GatedResnet(Block):
    Config = GatedResnetConfig

    def __init__(self, config: GatedResnetConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        kernel = tuple(config.kernel_size or DEFAULT_KERNELS[config.conv])
        if config.conv == "down_shifted" and kernel[1] % 2 == 0:
            raise BlockError(f"a down_shifted kernel needs an odd width (got {kernel[1]})", field="kernel_size")
        if config.conv == "centred" and (kernel[0] % 2 == 0 or kernel[1] % 2 == 0):
            raise BlockError(f"a centred kernel needs an odd height and width (got {list(kernel)})", field="kernel_size")
        if config.conv == "nin" and kernel != (1, 1):
            raise BlockError("a nin gated_resnet has a 1x1 kernel", field="kernel_size")
        width = 2 if config.nonlinearity == "concat_elu" else 1
        filters, wn = source.channels, config.weight_norm
        self.padding = _padding(config.conv, kernel)
        self.conv1 = Conv(width * filters, filters, kernel, weight_norm=wn)
        if "aux" in aux:
            extra = require_map(aux["aux"], "aux", "aux")
            if (extra.height, extra.width) != (source.height, source.width):
                raise BlockError(f"aux must match the input's size {source.height}x{source.width}, got {extra.describe()}", field="aux")
            self.nin_aux = Conv(width * extra.channels, filters, 1, weight_norm=wn)
        else:
            self.nin_aux = None
        self.conv2 = Conv(width * filters, 2 * filters, kernel, weight_norm=wn, init_scale=0.1)
        check_conditioning(aux, (source.height, source.width))
        self.label = nn.Embedding(aux["label"].channels, 2 * filters) if "label" in aux else None
        if self.label is not None:  # as PixelCNN++'s class weights: N(0, 0.05), small beside the 0.1 scale conv2 starts at
            nn.init.normal_(self.label.weight, std=0.05)
        self.output_info = source

    def f(self, x):
        kind = self.config.nonlinearity
        if kind == "concat_elu":
            return F.elu(torch.cat([x, -x], dim=1))
        return F.elu(x) if kind == "elu" else F.relu(x)

    def forward(self, x, aux=None, label=None):
        c1 = self.conv1(F.pad(self.f(x), self.padding))
        if self.nin_aux is not None:
            c1 = c1 + self.nin_aux(self.f(aux))
        c1 = dropout(self.f(c1), self.config.dropout, self.training)
        c2 = self.conv2(F.pad(c1, self.padding))
        if self.label is not None:
            c2 = c2 + label_vectors(self.label, label)[:, :, None, None]
        a, b = c2.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)

    def new_cache(self, batch, device, dtype):
        info = self.output_info  # f(first convolution) at every position computed so far: what the second one reads
        return torch.zeros(batch, self.conv2.conv.in_channels, info.height, info.width, device=device, dtype=dtype)

    def forward_at(self, region, cache, x, aux=None, label=None):
        left, _, top, _ = self.padding
        c1 = conv_at(self.conv1, x, region, top, left, transform=self.f)  # [B, F, n]
        if self.nin_aux is not None:
            c1 = c1 + pointwise_at(self.nin_aux, self.f(region.take(aux)))
        region.put(cache, self.f(c1))  # dropout is off when sampling
        c2 = conv_at(self.conv2, cache, region, top, left)
        if self.label is not None:
            c2 = c2 + label_vectors(self.label, label)[:, :, None]
        a, b = c2.chunk(2, dim=1)
        return region.take(x) + a * torch.sigmoid(b)

    def reach(self):
        kh, kw = self.config.kernel_size or DEFAULT_KERNELS[self.config.conv]
        if self.config.conv == "centred":
            one = Reach.kernel(kh, kw)
        else:
            one = Reach(kh - 1, 0, kw // 2, kw // 2) if self.config.conv == "down_shifted" else Reach(kh - 1, 0, kw - 1, 0)
        return one + one  # two convolutions

    def causality(self, inputs, aux):
        state = canonical(inputs[0], self.image.channels)
        if self.config.conv == "centred":
            if any(s != Causal.NONE for s in (state, *aux.values())):
                raise BlockError(
                    "a centred gated_resnet reads positions below and to the right, so it takes only streams that do not depend "
                    "on the image (earlier stages' variables, conditioning maps and what is computed from them)",
                    field="conv",
                )
            return Causal.NONE
        if state in (Causal.NONE, Causal.FUTURE):
            convolved = state
        elif self.config.conv == "down_shifted":
            if state != Causal.ABOVE:
                raise BlockError(
                    f"a down_shifted gated_resnet sees the whole current row of its input, which is '{state.label}'; "
                    "use it on a stream that sees only rows above, or use conv down_right_shifted",
                    field="conv",
                )
            convolved = state
        else:  # the current position's channels are mixed
            convolved = canonical(ungrouped(state), self.image.channels)
        return join(state, convolved, *(canonical(ungrouped(s), self.image.channels) for s in aux.values()))


@hookimpl
def arblocks_register_blocks(register):
    register(Gate)
    register(GatedResnet)
