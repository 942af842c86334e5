"""Stream plumbing: add and concat merge streams, identity copies one, slice takes some of its channels."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..core.block import Block, ChannelMixing, Elementwise, require_map, same_size
from ..core.hookspecs import hookimpl
from ..core.incremental import Reach
from ..core.ops import grouped_cat, keeps_groups, ungrouped
from ..core.streams import join
from ..spec.errors import BlockError
from ..spec.models import BlockConfig


class AddConfig(BlockConfig):
    """Sum of several streams of the same shape (give them as a list in `in`)."""

    type: Literal["add"] = "add"


class Add(Block):
    Config = AddConfig
    num_inputs = None
    orderings = None

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        shapes = {require_map(i).shape for i in inputs}
        if len(shapes) != 1:
            raise BlockError(f"add needs streams of one shape, got {', '.join(i.describe() for i in inputs)}", field="in")
        self.output_info = inputs[0]

    def forward(self, *xs):
        return torch.stack(xs).sum(0)

    def reach(self):
        return Reach()

    def causality(self, inputs, aux):
        return join(*inputs)


class ConcatConfig(BlockConfig):
    """Concatenation of several streams on channels, sub-pixel group by group when every channel count allows it."""

    type: Literal["concat"] = "concat"


class Concat(Block):
    Config = ConcatConfig
    num_inputs = None
    orderings = None

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        height, width = same_size([require_map(i) for i in inputs])
        self.counts = [i.channels for i in inputs]
        self.groups = ctx.image.channels
        self.output_info = inputs[0].with_(channels=sum(self.counts), height=height, width=width)

    def forward(self, *xs):
        return grouped_cat(xs, self.groups)

    def reach(self):
        return Reach()

    def causality(self, inputs, aux):
        state = join(*inputs)
        return state if keeps_groups(self.counts, self.groups) else ungrouped(state)


class IdentityConfig(BlockConfig):
    """Copies a stream (for example to pop a skip stack into a named stream)."""

    type: Literal["identity"] = "identity"


class Identity(Elementwise):
    Config = IdentityConfig

    def forward(self, x):
        return x


class SliceConfig(BlockConfig):
    """A range of a stream's channels (e.g. to split one projection into keys and values)."""

    type: Literal["slice"] = "slice"
    start: int = Field(0, ge=0, le=65536, description="First channel.")
    stop: int = Field(gt=0, le=65536, description="One past the last channel.")


class Slice(ChannelMixing):
    Config = SliceConfig
    examples = [{"stop": 2}, {"start": 1, "stop": 3}]

    def __init__(self, config: SliceConfig, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        source = require_map(inputs[0])
        if not config.start < config.stop <= source.channels:
            raise BlockError(f"the slice [{config.start}:{config.stop}] is not a non-empty range of the input's {source.channels} channels", field="stop")
        self.output_info = source.with_(channels=config.stop - config.start)

    def forward(self, x):
        return x[:, self.config.start : self.config.stop]


@hookimpl
def arblocks_register_blocks(register):
    register(Add)
    register(Concat)
    register(Identity)
    register(Slice)
