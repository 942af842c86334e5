"""The block contract: what a registered block type provides.

A block type is an ``nn.Module`` subclass of :class:`Block` with

* ``Config``: a pydantic model (subclass of :class:`arblocks.spec.BlockConfig`) whose ``type`` field is
  a ``Literal`` naming the block, with a default, bounds and a description on every field;
* ``__init__(config, inputs, aux, ctx)``: builds the layers from the shapes of its input streams and
  sets ``self.output_info`` (a :class:`~arblocks.core.streams.StreamInfo` with the output's shape);
* ``forward(*inputs, **aux)``: one tensor per ``in`` stream, auxiliary streams by field name;
* ``causality(inputs, aux)``: its causal statement, mapping the causal states of its inputs to the
  state of its output (see :mod:`arblocks.core.streams`). The builder composes these statements and rejects
  a spec that cannot be causal; the gradient check of :mod:`arblocks.causality` is the final word.

For cached sampling a block may also give ``reach()`` (a local block: the sampler runs ``forward`` on a small window)
or ``forward_at(region, cache, *inputs, **aux)`` with ``new_cache(batch, device, dtype)`` (an explicit incremental
step); see :mod:`arblocks.core.incremental`. Without either it is recomputed over the whole map, which is exact but slow.

A block without a reach whose dependencies a boolean matrix gives (attention and its mask, embeddings of a sequence)
may give ``dependency_mask()``, a :class:`DependencyMask`: then the causality check proves it at any image size from
the matrix (see :mod:`arblocks.causality.mask_proof`), where running it on its full-size streams would cost too much.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..spec.errors import BlockError
from ..spec.models import BlockConfig, ImageSpec
from .incremental import Reach, Region, no_step
from .ops import ungrouped
from .readiness import position_order, ready_times
from .registry import base_of
from .streams import Causal, StreamInfo, canonical


@dataclass
class BuildContext:
    """What a block may know about the model it is part of."""

    image: ImageSpec
    ordering: str  # the ordering's key: its name, with "+transpose" etc. for transformed orders
    path: str
    #: ``build_chain(nodes, input_info, key)`` builds the nested block list held in the config field ``key`` (a
    #: :class:`arblocks.core.builder.Chain`)
    build_chain: Callable[[Sequence[Any], StreamInfo, str], nn.Module]
    #: [H, W] tensor: the position of every pixel of the image in the generation order
    rank: Any = None
    #: the registry the model is built from (for blocks that hold registered objects, like attention patterns)
    registry: Any = None
    #: modules that blocks of one model share, by a key the blocks choose (one attention mask for 128 layers)
    shared: dict = field(default_factory=dict)

    def order_of(self, info: StreamInfo):
        """[h, w] long: the generation order of a stream's positions, at the stream's own resolution (a lower-resolution
        position comes when the earliest pixel of its block does; see :mod:`arblocks.core.readiness`)."""
        return position_order(self.rank, info.height, info.width)

    def frontier(self, info: StreamInfo):
        """[G, h, w] long: per channel group and position of a stream, how many sub-pixels (in generation order) its
        values may depend on, from its causal state (:func:`arblocks.core.readiness.ready_times`)."""
        return ready_times(info, self.rank, self.image.channels)


@dataclass(frozen=True)
class DependencyMask:
    """What each output of a block may read, as it is built: output unit ``i`` reads the map a slot names only at the
    units ``j`` where ``reads[slot][i, j]`` is True.

    Units are a stream's positions in storage order ``(h w p)``: each pixel holds ``per_pixel`` of them, and unit ``p``
    of a pixel is the channels of sub-pixel group ``p`` (:func:`arblocks.core.ops.channel_groups` of the stream's
    channels into ``per_pixel`` groups; with 1, all of a pixel's channels). ``per_pixel`` is one for the output and
    every map: a block whose groups matter anywhere (a sub-pixel sequence, a block that keeps channel groups apart)
    states its masks per sub-pixel (``per_pixel`` = the image's channels). A slot is the index of a positional input or
    the name of an auxiliary field; a map the masks do not name may be read anywhere. A matrix is ``[N_out, N_in]``
    bool, ``N`` = height x width x ``per_pixel`` of the output and the map."""

    reads: dict[int | str, torch.Tensor]
    per_pixel: int = 1


@base_of("block")
class Block(nn.Module):
    """Base class of all blocks. See the module docstring for the contract."""

    Config: ClassVar[type[BlockConfig]]
    #: number of streams in ``in``; ``None`` for one or more
    num_inputs: ClassVar[int | None] = 1
    #: orderings whose causality the block's statement covers; ``None`` when it holds for every ordering
    orderings: ClassVar[frozenset[str] | None] = frozenset({"raster"})

    output_info: StreamInfo

    def __init__(self, config: BlockConfig, inputs: Sequence[StreamInfo], aux: dict[str, StreamInfo], ctx: BuildContext):
        super().__init__()
        self.config = config
        self.image = ctx.image

    def causality(self, inputs: Sequence[Causal], aux: dict[str, Causal]) -> Causal:
        raise NotImplementedError(f"{type(self).__name__} must state its causality")

    # -- cached sampling (see arblocks.core.incremental) ----------------------------------------------
    def reach(self) -> Reach | None:
        """For a local block (translation-equivariant, zero-padded at the borders): how far an output reads its inputs."""
        return None

    def dependency_mask(self) -> DependencyMask | None:
        """For a block without a reach: the units of its inputs each output unit may read (a superset of what it reads),
        for the streams it was built for; None when no matrix says it."""
        return None

    def new_cache(self, batch: int, device, dtype) -> Any:
        """What ``forward_at`` keeps between the steps of one sampling call (e.g. keys and values), or None."""
        return None

    @no_step
    def forward_at(self, region: Region, cache: Any, *inputs, **aux):
        """The output [B, C, n] at ``region``, from the full buffers of the inputs (an explicit incremental step)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return self.config.type


class Elementwise(Block):
    """A block that maps each value on its own (or each position's channels in a group-preserving way)."""

    orderings = None

    def reach(self):
        return Reach()

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.output_info = inputs[0]

    def causality(self, inputs, aux):
        return inputs[0]


class ChannelMixing(Elementwise):
    """A block that works on each position alone but mixes its channels (normalizations, slices): the sub-pixel
    channel groups are no longer kept apart, so a ``strict`` or ``inclusive`` input becomes ``current``."""

    def causality(self, inputs, aux):
        return canonical(ungrouped(inputs[0]), self.image.channels)


def require_map(info: StreamInfo, what: str = "input", field: str = "in") -> StreamInfo:
    if info.kind != "map":
        raise BlockError(f"{what} must be a feature map, got {info.describe()}", field=field)
    return info


def require_within_image(info: StreamInfo, ctx: BuildContext, block_type: str, field: str = "in") -> None:
    """Refuse a stream larger than the image: its positions would not stand for whole pixels in the generation order."""
    if info.height > ctx.image.height or info.width > ctx.image.width:
        raise BlockError(f"{block_type} works at the image's resolution or below, got {info.describe()} for a "
                         f"{ctx.image.height}x{ctx.image.width} image", field=field)


def same_size(infos: Sequence[StreamInfo], field: str = "in") -> tuple[int, int]:
    sizes = {(i.height, i.width) for i in infos}
    if len(sizes) != 1:
        shown = ", ".join(i.describe() for i in infos)
        raise BlockError(f"streams must have the same height and width, got {shown}", field=field)
    return sizes.pop()
