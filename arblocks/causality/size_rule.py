"""The size rule: at which image size a causality check speaks for the image the model runs at.

A check on a small image proves nothing about a leak that only exists on a larger one (a wide dilated kernel whose
future tap falls outside an 8-pixel image). The rule below says when it does.

Every block that states a ``reach()`` (see :mod:`arblocks.core.incremental`) is local: translation-equivariant, zero-padded
at the borders, its output reading its inputs within the reach. Composing the reaches through the model's streams
(strides, upsampling and skip stacks included) gives the model's **extent**: the head's parameters at pixel ``p`` are
a function of the image pixels in ``[p - top, p + bottom] x [p - left, p + right]`` alone, the same function at every
``p`` that lies at the same distance from the borders (up to ``top``/``bottom``/``left``/``right``) and at the same
phase modulo the **period** (the coarsest stream's scale). Call that triple a position's *border case*. When, along
both axes, every border case of the full image also occurs in a smaller image, every dependency of the full model
(an output, an input at a fixed offset from it) also exists in the small model, and conversely; for an ordering whose
allowed inputs depend only on the offset (raster and its transposes and reflections: ``Ordering.shift_invariant``),
a leak at full size is then a leak at the small size. So a check at that size is a check at full size.

The rule needs every piece to be shift-invariant: every block and the head state a reach, every input stream is
``shift_invariant`` (a label, a constant, a map the caller gives; not a positional grid), and the ordering is. When
something is not (attention reads every earlier position), the rule asks for the full size. The reach is each
block's own statement; the conformance kit tests it through the cached sampler, which compares every windowed
step with a full forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.incremental import Reach
from ..core.model import ARModel
from ..core.ordering import ordering_of
from ..spec.models import IMAGE_STREAM


@dataclass(frozen=True)
class Extent:
    """The image pixels a stream's value at a position reads, around the position's anchor pixel (a position of a
    stream at scale ``s``, i.e. ``s`` image pixels per position, is anchored at pixel ``i * s``)."""

    top: int
    bottom: int
    left: int
    right: int
    scale_h: int = 1
    scale_w: int = 1


@dataclass(frozen=True)
class SizeRule:
    """What the rule says for one model: the smallest image (height, width) at which a check covers the full image,
    and why. ``extent`` is None when the rule does not apply (``reason`` names the piece that is not local)."""

    full: tuple[int, int]
    needed: tuple[int, int]
    extent: Extent | None
    period: tuple[int, int]
    reason: str

    def covers(self, height: int, width: int) -> bool:
        """Whether a check on a ``height x width`` image speaks for the full image."""
        if (height, width) == self.full:
            return True
        if self.extent is None:
            return False
        e = self.extent
        return (_covers(self.full[0], height, e.top, e.bottom, self.period[0])
                and _covers(self.full[1], width, e.left, e.right, self.period[1]))


def border_cases(size: int, before: int, after: int, period: int) -> set[tuple[int, int, int]]:
    """The border case of every position along one axis of ``size`` positions."""
    return {(p % period, min(p, before), min(size - 1 - p, after)) for p in range(size)}


def _covers(full: int, size: int, before: int, after: int, period: int) -> bool:
    if size == full:
        return True
    if size > full or size % period or full % period:
        return False
    return border_cases(size, before, after, period) >= border_cases(full, before, after, period)


def smallest_covering(full: int, before: int, after: int, period: int) -> int:
    """The smallest size along one axis whose border cases include every one of the full size's."""
    return next(n for n in range(1, full + 1) if _covers(full, n, before, after, period))


class _NotLocal(Exception):
    """A piece of the model that the rule cannot follow (the message says which)."""


def model_extent(model: ARModel, registry=None) -> tuple[Extent | None, tuple[int, int], str]:
    """The extent of the head's parameters, the period, and a reason when the rule does not apply (extent None)."""
    ordering = ordering_of(model.spec, registry)
    if not getattr(ordering, "shift_invariant", False):
        return None, (1, 1), f"the ordering '{ordering.key}' depends on where a pixel is, not only on its offset"
    image = model.image
    start: dict[str, Extent | None] = {IMAGE_STREAM: Extent(0, 0, 0, 0)}
    for name, module in model.inputs.items():
        if not getattr(module, "shift_invariant", False):
            return None, (1, 1), f"the input '{name}' ({module.config.type}) depends on the position"
        start[name] = None  # inputs do not depend on the image: no extent (streams computed from them alone have none either)
    periods = {(1, 1)}

    def through(step, inputs, aux):
        read = [e for e in [*inputs, *(e for parts in aux.values() for e in parts)] if e is not None]
        if not read:  # computed from inputs alone (a conditioning network): its reach and scale do not shape what reads the image
            return None
        layer = model.layers[step.index]
        reach = layer.reach() if callable(getattr(layer, "reach", None)) else None
        if reach is None:
            raise _NotLocal(f"{step.path} ({step.type}) states no reach: its output may read the whole image")
        out = step.info
        if out.kind != "map":
            return None
        scale = (image.height // out.height, image.width // out.width)
        if (scale[0] * out.height, scale[1] * out.width) != (image.height, image.width):
            raise _NotLocal(f"{step.path} ({step.type}) works at {out.height}x{out.width}, not a fraction of the image")
        periods.add(scale)
        return _through(reach, read, scale)

    try:
        extents = model.replay(start, through)
    except _NotLocal as error:
        return None, (1, 1), str(error)
    head_reach = model.head.reach() if callable(getattr(model.head, "reach", None)) else None
    if head_reach is None:
        return None, (1, 1), f"the head ({model.spec.head.type}) states no reach"
    source = extents[model.head_in] or Extent(0, 0, 0, 0)
    period = (math.lcm(*(p[0] for p in periods)), math.lcm(*(p[1] for p in periods)))
    return _through(head_reach, [source], (1, 1)), period, ""


def _through(reach: Reach, inputs: list[Extent], scale: tuple[int, int]) -> Extent:
    """The extent of a local block's output at ``scale`` from its inputs' extents (see :class:`arblocks.core.incremental.Reach`:
    a reach counts input positions around the one corresponding to the output's, ``i // factor`` when upsampling, whose
    anchor lies up to ``s_in - s_out`` pixels above and left of the output's)."""
    if not inputs:
        return Extent(0, 0, 0, 0, *scale)
    return Extent(
        top=max(reach.top * e.scale_h + e.top + max(0, e.scale_h - scale[0]) for e in inputs),
        bottom=max(reach.bottom * e.scale_h + e.bottom for e in inputs),
        left=max(reach.left * e.scale_w + e.left + max(0, e.scale_w - scale[1]) for e in inputs),
        right=max(reach.right * e.scale_w + e.right for e in inputs),
        scale_h=scale[0],
        scale_w=scale[1],
    )


def size_rule(model: ARModel, registry=None) -> SizeRule:
    """The rule for a model built at the spec's own image size (a model on the meta device will do)."""
    full = (model.image.height, model.image.width)
    extent, period, reason = model_extent(model, registry)
    if extent is None:
        return SizeRule(full, full, None, period, reason)
    needed = (smallest_covering(full[0], extent.top, extent.bottom, period[0]),
              smallest_covering(full[1], extent.left, extent.right, period[1]))
    why = (f"outputs read at most {extent.top} rows above and {extent.bottom} below, {extent.left} columns left and "
           f"{extent.right} right" + (f", with period {period[0]}x{period[1]}" if period != (1, 1) else ""))
    return SizeRule(full, needed, extent, period, why)
