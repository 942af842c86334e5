"""Residual wrapper: ``x + body(x)`` around a chain of blocks."""

from __future__ import annotations

from typing import Any, Literal

from ..core.block import Block, require_map
from ..core.hookspecs import hookimpl
from ..core.incremental import windowed_forward
from ..core.streams import join
from ..spec.errors import BlockError
from ..spec.models import BlockConfig, blocks_field


class ResidualConfig(BlockConfig):
    """Residual connection: adds the input to the output of a nested chain of blocks (which must keep its shape)."""

    type: Literal["residual"] = "residual"
    body: list[Any] = blocks_field(
        "Blocks applied in order to the residual's input; they read and write the residual's own stream, so they take no in/out/push.",
        min_length=1,
    )


class Residual(Block):
    Config = ResidualConfig
    orderings = None  # as causal as its body, which is checked block by block
    #: a local body (a window when sampling) and one with attention (stepped layer by layer when sampling)
    examples = [{"body": [{"type": "elu"}, {"type": "conv"}]}, {"body": [{"type": "layer_norm"}, {"type": "transformer_block", "heads": 1}]}]

    def __init__(self, config: ResidualConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        self.body = ctx.build_chain(config.body, source, "body")
        if self.body.output_info.shape != source.shape:
            raise BlockError(
                f"the body turns {source.describe()} into {self.body.output_info.describe()}; a residual body must keep the shape",
                field="body",
            )
        self.output_info = source

    def forward(self, x):
        return x + self.body(x)

    def reach(self):
        return self.body.reach()

    # cached sampling: a local body runs on a window (reach); any other steps layer by layer through the chain
    def new_cache(self, batch, device, dtype):
        return self.body.new_cache(batch, device, dtype)

    def forward_at(self, region, cache, x):
        reach = self.body.reach()
        if reach is not None:
            return windowed_forward(self, reach, region, [x], {})
        if not self.body.steps_in_place():
            return region.take(self(x))
        return region.take(x) + self.body.forward_at(region, cache, x)

    def causality(self, inputs, aux):
        return join(inputs[0], self.body.causality(inputs[0]))


@hookimpl
def arblocks_register_blocks(register):
    register(Residual)
