"""The frontier of a stream: for each of its positions (and channel groups), how much of the image it may depend on.

This is the one notion of per-position causality that attention masks, the cached sampler and the block proof share.
It is also when each position of a stream becomes computable during sampling.

Time counts the sub-pixels known so far, in generation order: sub-pixel ``c`` of the pixel with rank ``r`` in the
ordering is the ``r * C + c``-th to be generated (``C`` image channels), so after it ``T = r * C + c + 1`` are known.
The causal state of a stream (:mod:`arblocks.core.streams`) bounds what each of its values may depend on; a value is final
as soon as everything its state allows is known. That time needs no block's cooperation:

========== ================================================================
none       0 (conditioning inputs: computed once, before the first draw)
above      once every pixel of the rows above is known
past       ``r * C``: once every earlier pixel is known
strict     ``r * C + g`` for channel group ``g`` (the channels before it)
inclusive  ``r * C + g + 1`` (its own channel too)
current    ``r * C + C`` (the whole pixel)
========== ================================================================

A position of a lower-resolution stream stands for the block of pixels it covers and its state refers to the block's
*earliest* pixel in the generation order (the top-left one under raster order); a higher-resolution position refers to
the pixel it lies in (:func:`represented_pixels`). The positions of a stream are generated in the order of the pixels
they refer to (:func:`position_order`), so a block that orders positions (attention) works at any resolution.
"""

from __future__ import annotations

import math

import torch

from .ops import channel_groups
from .streams import Causal, StreamInfo


def block_size(size: int, image_size: int) -> int:
    """Image rows (or columns) per row of a smaller stream: the ratio when it divides, else the power of two that
    stride-2 steps rounding up give (5 -> 3 -> 2: blocks of 4 rows, not ceil(5 / 2) = 3)."""
    if image_size % size == 0:
        return image_size // size
    return 1 << math.ceil(math.log2(image_size / size))


def pixel_of(size: int, image_size: int) -> torch.Tensor:
    """[size]: the first image row (or column) of the block each row (column) of a stream of this size covers, or
    for a larger stream the row it lies in."""
    index = torch.arange(size)
    if size <= image_size:
        return (index * block_size(size, image_size)).clamp(max=image_size - 1)
    return index * image_size // size


def represented_pixels(rank: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[h, w] rows and [h, w] columns: the image pixel each position of a ``height x width`` stream refers to.

    A position of a stream no larger than the image covers a block of :func:`block_size` rows and columns (cut at the
    border) and refers to the block's earliest pixel in the order ``rank``; otherwise each axis maps to the pixel it
    lies in."""
    H, W = rank.shape
    rows, cols = pixel_of(height, H), pixel_of(width, W)
    if height > H or width > W:
        return rows[:, None].expand(height, width), cols[None, :].expand(height, width)
    fh, fw = block_size(height, H), block_size(width, W)
    padded = torch.full((height * fh, width * fw), torch.iinfo(torch.long).max, dtype=torch.long)
    padded[:H, :W] = rank
    blocks = padded.view(height, fh, width, fw).permute(0, 2, 1, 3).flatten(2)  # [h, w, fh * fw]
    first = blocks.argmin(-1)  # [h, w]: index of the earliest pixel within each block
    # a block wholly beyond the image (a map of a size no stride gives) refers to the last row or column
    return (rows[:, None] + first // fw).clamp(max=H - 1), (cols[None, :] + first % fw).clamp(max=W - 1)


def position_order(rank: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[h, w] long: the place of each position of a ``height x width`` stream in the generation order of the pixels
    they refer to (0 .. h*w - 1; positions that refer to one pixel keep their raster order)."""
    rows, cols = represented_pixels(rank, height, width)
    order = torch.empty(height * width, dtype=torch.long)
    order[torch.argsort(rank[rows, cols].flatten().long(), stable=True)] = torch.arange(height * width)
    return order.view(height, width)


def stream_groups(info: StreamInfo, image_channels: int) -> list[int]:
    """The sub-pixel channel groups a stream's state distinguishes (one group when it keeps none apart)."""
    if info.causal in (Causal.STRICT, Causal.INCLUSIVE) and image_channels > 1:
        with torch.device("cpu"):  # values are needed, also in a meta build
            return sorted(set(channel_groups(info.channels, image_channels).tolist()))
    return [0]


def ready_times(info: StreamInfo, rank: torch.Tensor, image_channels: int) -> torch.Tensor:
    """[G, h, w] long, the stream's frontier: for each channel group of :func:`stream_groups` and each position, the
    number of sub-pixels (in generation order) its values may depend on, which is also the time they are final."""
    rows, cols = represented_pixels(rank, info.height, info.width)
    r = rank[rows, cols].long()  # [h, w]: rank of the pixel each position refers to
    C = image_channels
    state = info.causal
    groups = torch.tensor(stream_groups(info, C))[:, None, None]
    if state == Causal.NONE:
        times = torch.zeros_like(r)[None]
    elif state == Causal.ABOVE:
        last_above = torch.cummax(rank.max(dim=1).values, 0).values  # [H]: latest rank among rows 0..R
        before_row = torch.cat([torch.tensor([-1]), last_above[:-1]]).long()
        times = ((before_row[rows] + 1) * C)[None]
    elif state == Causal.PAST:
        times = (r * C)[None]
    elif state == Causal.STRICT:
        times = r[None] * C + groups
    elif state == Causal.INCLUSIVE:
        times = r[None] * C + groups + 1
    elif state == Causal.CURRENT:
        times = (r * C + C)[None]
    else:
        raise ValueError(f"a stream in state '{state.label}' depends on the future and cannot be sampled")
    return times.contiguous()
