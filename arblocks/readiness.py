"""When does each position of a stream become computable during sampling?

Time counts the sub-pixels known so far, in generation order: sub-pixel ``c`` of the pixel with rank ``r`` in the
ordering is the ``r * C + c``-th to be generated (``C`` image channels), so after it ``T = r * C + c + 1`` are known.
The causal state of a stream (:mod:`arblocks.streams`) bounds what each of its values may depend on; a value is final
as soon as everything its state allows is known. That time needs no block's cooperation:

========== ================================================================
none       0 (conditioning inputs: computed once, before the first draw)
above      once every pixel of the rows above is known
past       ``r * C``: once every earlier pixel is known
strict     ``r * C + g`` for channel group ``g`` (the channels before it)
inclusive  ``r * C + g + 1`` (its own channel too)
current    ``r * C + C`` (the whole pixel)
========== ================================================================

A position of a lower-resolution stream stands for the block of pixels it covers and its state refers to the
block's top-left pixel, as for the builder; a higher-resolution position to the pixel it lies in.
"""

from __future__ import annotations

import torch

from .ops import channel_groups
from .streams import Causal, StreamInfo


def pixel_of(size: int, image_size: int) -> torch.Tensor:
    """[size]: the image row (or column) each row (column) of a stream of this size refers to."""
    index = torch.arange(size)
    if size <= image_size:
        return index * -(-image_size // size)
    return index * image_size // size


def stream_groups(info: StreamInfo, image_channels: int) -> list[int]:
    """The sub-pixel channel groups a stream's state distinguishes (one group when it keeps none apart)."""
    if info.causal in (Causal.STRICT, Causal.INCLUSIVE) and image_channels > 1:
        return sorted(set(channel_groups(info.channels, image_channels).tolist()))
    return [0]


def ready_times(info: StreamInfo, rank: torch.Tensor, image_channels: int) -> torch.Tensor:
    """[G, h, w] long: for each channel group of :func:`stream_groups` and each position, the time its values are final."""
    height, width = rank.shape
    rows, cols = pixel_of(info.height, height), pixel_of(info.width, width)
    r = rank[rows][:, cols].long()  # [h, w]: rank of the pixel each position refers to
    C = image_channels
    state = info.causal
    groups = torch.tensor(stream_groups(info, C))[:, None, None]
    if state == Causal.NONE:
        times = torch.zeros_like(r)[None]
    elif state == Causal.ABOVE:
        last_above = torch.cummax(rank.max(dim=1).values, 0).values  # [H]: latest rank among rows 0..R
        before_row = torch.cat([torch.tensor([-1]), last_above[:-1]]).long()
        times = ((before_row[rows] + 1) * C)[:, None].expand_as(r)[None]
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
