"""Stream plumbing: add and concat merge streams, identity copies one."""

from __future__ import annotations

from typing import Literal

import torch

from ..block import Block, require_map, same_size
from ..errors import BlockError
from ..hookspecs import hookimpl
from ..ops import grouped_cat, keeps_groups, ungrouped
from ..spec import BlockConfig
from ..streams import join


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

    def causality(self, inputs, aux):
        state = join(*inputs)
        return state if keeps_groups(self.counts, self.groups) else ungrouped(state)


class IdentityConfig(BlockConfig):
    """Copies a stream (for example to pop a skip stack into a named stream)."""

    type: Literal["identity"] = "identity"


class Identity(Block):
    Config = IdentityConfig
    orderings = None

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.output_info = inputs[0]

    def forward(self, x):
        return x

    def causality(self, inputs, aux):
        return inputs[0]


@hookimpl
def arblocks_register_blocks(register):
    register(Add)
    register(Concat)
    register(Identity)
