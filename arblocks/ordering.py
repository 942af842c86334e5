"""Generation orderings of the pixels. The causality harness follows the spec's ordering.

An ordering type subclasses :class:`Ordering`, has a ``Config`` with a ``type`` Literal, and gives
``rank(height, width)``: a ``[H, W]`` integer tensor, the position of each pixel in the generation order.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from .hookspecs import hookimpl
from .spec import Config


class OrderingConfig(Config):
    type: str


class Ordering:
    Config: ClassVar[type[OrderingConfig]]

    def rank(self, height: int, width: int) -> torch.Tensor:
        raise NotImplementedError


class RasterConfig(OrderingConfig):
    """Row by row from the top, left to right within a row."""

    type: Literal["raster"] = "raster"


class Raster(Ordering):
    Config = RasterConfig

    def rank(self, height, width):
        return torch.arange(height * width).reshape(height, width)


@hookimpl
def arblocks_register_orderings(register):
    register(Raster)
