"""What the builder knows about a stream before any tensor exists: its shape and its causal state.

The causal state of a stream says which part of the modelled image ``x`` a feature at position ``p``
may depend on. The states form a chain, each allowing more than the one before:

======== ================================================================================
none     nothing of x (conditioning inputs, positional maps)
above    rows strictly above p (PixelCNN++'s down-shifted stream)
past     every channel of the positions strictly before p in the ordering
strict   ``past`` plus, for channel group g, the channels c < g of p itself (mask A)
inclusive``past`` plus, for channel group g, the channels c <= g of p (mask B; the raw image)
current  ``past`` plus any channel of p: the channel groups are mixed
future   a position after p: a leak no later block can repair
======== ================================================================================

Channel group of channel ``i`` of an ``n``-channel stream, for a ``C``-channel image: ``i * C // n``.
For a one-channel image ``strict`` equals ``past`` and ``current`` equals ``inclusive``;
:func:`canonical` folds them so that comparisons stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum


class Causal(IntEnum):
    NONE = 0
    ABOVE = 1
    PAST = 2
    STRICT = 3
    INCLUSIVE = 4
    CURRENT = 5
    FUTURE = 6

    @property
    def label(self) -> str:
        return self.name.lower()


def canonical(state: Causal, image_channels: int) -> Causal:
    """Fold the states that coincide for a one-channel image."""
    if image_channels == 1:
        if state == Causal.STRICT:
            return Causal.PAST
        if state == Causal.CURRENT:
            return Causal.INCLUSIVE
    return state


def join(*states: Causal) -> Causal:
    """The state of a stream computed from several streams: the most permissive one."""
    return max(states, default=Causal.NONE)


@dataclass(frozen=True)
class StreamInfo:
    """Shape and causal state of a stream.

    ``kind`` is ``"map"`` for ``[B, channels, height, width]`` feature maps and ``"label"`` for
    ``[B]`` integer class labels (``channels`` then holds the number of classes).
    """

    channels: int
    height: int | None = None
    width: int | None = None
    causal: Causal = Causal.NONE
    kind: str = "map"

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "map":
            return (self.channels, self.height, self.width)
        return ()

    def with_(self, **changes) -> StreamInfo:
        return replace(self, **changes)

    def describe(self) -> str:
        if self.kind == "map":
            return f"{self.channels}x{self.height}x{self.width}"
        return f"label({self.channels} classes)"
