"""An image as a sequence: its pixels, or its sub-pixels (channels as positions), in the spec's generation order.

Sequence blocks keep the ``[B, D, H, W]`` feature maps of every other block. In a *sub-pixel sequence* each pixel holds
one position per image channel, and a stream of ``C * D`` channels holds ``D`` features per sub-pixel: channel group
``c`` (see :mod:`arblocks.core.streams`) is sub-pixel ``c``. The causal states ``strict`` and ``inclusive`` then say exactly
what a sub-pixel position may see, so the builder, the harness and the heads need nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from pydantic import Field

from ..spec.errors import BlockError

SUBPIXELS = Field(
    False,
    description="Treat each channel of a pixel as its own sequence position (a sub-pixel sequence: the features split "
    "into one group per image channel, generated in channel order).",
)


def sequence_layout(channels: int, image_channels: int, subpixels: bool) -> tuple[int, int]:
    """(positions per pixel, features per position) of a ``channels``-channel stream read as a pixel sequence or, with
    ``subpixels``, a sub-pixel sequence of an ``image_channels``-channel image."""
    per_pixel = image_channels if subpixels else 1
    if channels % per_pixel:
        raise BlockError(f"{channels} channels do not split into {per_pixel} sub-pixel groups", field="in")
    return per_pixel, channels // per_pixel


def to_sequence(x: torch.Tensor, per_pixel: int) -> torch.Tensor:
    """[B, P*D, H, W] -> [B, (H W P), D]: positions in storage order, each pixel's sub-positions together."""
    return rearrange(x, "b (p d) h w -> b (h w p) d", p=per_pixel)


def from_sequence(seq: torch.Tensor, per_pixel: int, height: int, width: int) -> torch.Tensor:
    """[B, (H W P), D] -> [B, P*D, H, W], the inverse of :func:`to_sequence`."""
    return rearrange(seq, "b (h w p) d -> b (p d) h w", p=per_pixel, h=height, w=width)


@dataclass(frozen=True)
class SequencePositions:
    """The positions of an image as a sequence, in storage order ``(h w c)``: each pixel's sub-positions together."""

    step: torch.Tensor  # [N] place in the generation order
    row: torch.Tensor  # [N]
    col: torch.Tensor  # [N]
    sub: torch.Tensor  # [N] channel (sub-pixel) index, 0 in a pixel sequence
    per_pixel: int  # positions per pixel: 1, or the image's channels for a sub-pixel sequence

    @classmethod
    def of_image(cls, rank: torch.Tensor, per_pixel: int = 1) -> SequencePositions:
        height, width = rank.shape
        pixel = torch.arange(height * width).repeat_interleave(per_pixel)  # [N] raster index of each position's pixel
        sub = torch.arange(per_pixel).repeat(height * width)
        step = rank.flatten()[pixel] * per_pixel + sub
        return cls(step=step, row=pixel // width, col=pixel % width, sub=sub, per_pixel=per_pixel)

    def __len__(self) -> int:
        return len(self.step)


def previous_position(seq: SequencePositions) -> tuple[torch.Tensor, torch.Tensor]:
    """For every position, the index of the one generated just before it, and a mask of the first position."""
    order = torch.argsort(seq.step)  # positions in generation order
    previous = torch.zeros_like(order)
    previous[order[1:]] = order[:-1]
    return previous, seq.step == 0
