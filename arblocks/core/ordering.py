"""Generation orderings of the pixels. The builder, the causality harness and the sampler follow the spec's ordering.

An ordering type subclasses :class:`Ordering`, has a ``Config`` (subclass of :class:`OrderingConfig`) with a ``type``
Literal, and gives ``curve(height, width)``: a ``[H, W]`` integer tensor, the position of each pixel in the order.
Every ordering can be transposed and reflected (``transpose``, ``reflect_rows``, ``reflect_cols``), which the base class
applies. In a spec, ``"ordering": "raster"`` is short for ``{"type": "raster"}``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt

from ..spec.models import Config
from .hookspecs import hookimpl
from .plugins import get_registry
from .registry import base_of

TRANSFORMS = ("transpose", "reflect_rows", "reflect_cols")


class OrderingConfig(Config):
    type: str
    transpose: bool = Field(False, description="Generate the transposed image's order (columns first).")
    reflect_rows: bool = Field(False, description="Reverse the order of the rows (generate from the bottom).")
    reflect_cols: bool = Field(False, description="Reverse the order of the columns (generate from the right).")


@base_of("ordering")
class Ordering:
    Config: ClassVar[type[OrderingConfig]]
    #: True when whether pixel q comes before pixel p depends only on the offset q - p, at every image size (raster and
    #: its transposes and reflections): the causality check's size rule may then apply (see arblocks.causality.size_rule)
    shift_invariant: ClassVar[bool] = False
    #: configs (without ``type``) that tests build models with (the property test draws from them)
    examples: ClassVar[list[dict]] = [{}]

    def __init__(self, config: OrderingConfig | None = None):
        self.config = config or self.Config()

    def curve(self, height: int, width: int) -> torch.Tensor:
        raise NotImplementedError

    def rank(self, height: int, width: int) -> torch.Tensor:
        """[H, W]: the position of every pixel in the generation order (0 first)."""
        c = self.config
        rank = self.curve(width, height).T if c.transpose else self.curve(height, width)
        if c.reflect_rows:
            rank = rank.flip(0)
        if c.reflect_cols:
            rank = rank.flip(1)
        return rank.contiguous()

    @property
    def key(self) -> str:
        """The ordering's name with its transforms: what a block's ``orderings`` lists (``raster`` is plain raster)."""
        return "+".join([self.config.type, *(t for t in TRANSFORMS if getattr(self.config, t))])


class RasterConfig(OrderingConfig):
    """Row by row from the top, left to right within a row."""

    type: Literal["raster"] = "raster"


class Raster(Ordering):
    Config = RasterConfig
    shift_invariant = True

    def curve(self, height, width):
        return torch.arange(height * width).reshape(height, width)


class BlockRasterConfig(OrderingConfig):
    """Rectangular blocks in raster order, each generated in raster order (the Image Transformer's 2D local order)."""

    type: Literal["block_raster"] = "block_raster"
    block: tuple[PositiveInt, PositiveInt] = Field(description="[rows, columns] of a block, in pixels (edge blocks may be smaller).")


class BlockRaster(Ordering):
    Config = BlockRasterConfig
    examples: ClassVar[list[dict]] = [{"block": [2, 2]}, {"block": [2, 3]}]

    def curve(self, height, width):
        bh, bw = self.config.block
        rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        blocks_across = -(-width // bw)
        key = ((rows // bh) * blocks_across + cols // bw) * (bh * bw) + (rows % bh) * bw + cols % bw  # block, then place in it
        return torch.argsort(torch.argsort(key.flatten())).reshape(height, width)  # ranks 0..HW-1


def ordering_of(spec, registry=None) -> Ordering:
    """The ordering object of a validated spec."""
    registry = registry or get_registry()
    config = spec.ordering
    return registry.orderings[config.type].cls(config)


@hookimpl
def arblocks_register_orderings(register):
    register(Raster)
    register(BlockRaster)
