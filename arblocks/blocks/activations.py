"""Pointwise activations, and concat_elu (PixelCNN++), which doubles the channels group by group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..core.block import Elementwise, require_map
from ..core.hookspecs import hookimpl
from ..core.ops import grouped_cat, keeps_groups, ungrouped
from ..spec.models import BlockConfig


def activation_block(name: str, fn: Callable[[torch.Tensor], torch.Tensor], doc: str) -> type[Elementwise]:
    """A registered block type applying ``fn`` to every value."""
    config = type(f"{name.title().replace('_', '')}Config", (BlockConfig,), {
        "__doc__": doc,
        "__annotations__": {"type": Literal[name]},
        "type": name,
        "__module__": __name__,
    })

    def forward(self, x):
        return fn(x)

    return type(config.__name__.removesuffix("Config"), (Elementwise,), {"Config": config, "forward": forward, "__module__": __name__})


POINTWISE = [
    activation_block("relu", F.relu, "Rectified linear unit, max(x, 0)."),
    activation_block("elu", F.elu, "Exponential linear unit."),
    activation_block("gelu", F.gelu, "Gaussian error linear unit."),
    activation_block("silu", F.silu, "Sigmoid linear unit, x * sigmoid(x)."),
    activation_block("tanh", torch.tanh, "Hyperbolic tangent."),
    activation_block("sigmoid", torch.sigmoid, "Logistic sigmoid."),
]


class LeakyReluConfig(BlockConfig):
    """Leaky rectified linear unit."""

    type: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = Field(0.01, ge=0, le=1, description="Slope for negative inputs.")


class LeakyRelu(Elementwise):
    Config = LeakyReluConfig

    def forward(self, x):
        return F.leaky_relu(x, self.config.negative_slope)


class ConcatEluConfig(BlockConfig):
    """concat_elu (PixelCNN++): elu of the input and of its negation, concatenated on channels (output has twice the channels)."""

    type: Literal["concat_elu"] = "concat_elu"


class ConcatElu(Elementwise):
    Config = ConcatEluConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.output_info = source.with_(channels=2 * source.channels)
        self.groups = ctx.image.channels

    def forward(self, x):
        return F.elu(grouped_cat([x, -x], self.groups))

    def causality(self, inputs, aux):
        return inputs[0] if keeps_groups([self.output_info.channels // 2], self.groups) else ungrouped(inputs[0])


@hookimpl
def arblocks_register_blocks(register):
    for cls in [*POINTWISE, LeakyRelu, ConcatElu]:
        register(cls)
