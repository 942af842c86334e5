"""Sampling: the one entry point :func:`sample_images`, two engines, and PNG grids.

* ``cached`` (the default, :mod:`arblocks.sampling.cached`): at every draw only the positions that have just become computable
  are computed, block by block; its parameters are checked against one full forward pass at the end.
* ``naive``: one full forward pass per draw (per sub-pixel for per-channel heads, per pixel for joint heads). The
  reference the cached engine is tested against.

Both follow the spec's ordering, fill in the unknown pixels of a completion, and draw through the same function, so
that one generator seed gives both engines the same images.
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from ..core.model import ARModel
from .cached import CachedSampler
from .draws import Sampler, SamplingError, draw_at, start_images

__all__ = ["CachedSampler", "NaiveSampler", "SamplingError", "sample_batches", "sample_images"]

ENGINES = ("cached", "naive")


class NaiveSampler(Sampler):
    """One full forward pass per draw: the reference the cached engine is tested against."""

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        conditioning: dict[str, torch.Tensor] | None = None,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """``n`` images [n, C, H, W] of integer levels. ``known`` (with the bool ``known_mask`` over pixels [H, W])
        fixes those pixels: the sampler fills in the rest (completion)."""
        model = self.model
        device = next(model.parameters()).device
        x = start_images(n, model.image, known, device)
        _, iterator = self.draws(known_mask, progress)
        with parametrize.cached():
            for index, event in enumerate(iterator):
                r, c = event.row, event.col
                params = model(x, **(conditioning or {}))[..., r : r + 1, c : c + 1]
                draw_at(model, params, x, None, event, index, generator, temperature)
        return x


def sample_images(
    model: ARModel,
    n: int,
    *,
    engine: str = "cached",
    temperature: float = 1.0,
    conditioning: dict[str, torch.Tensor] | None = None,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    verify: bool = True,
    registry=None,
) -> torch.Tensor:
    """``n`` images [n, C, H, W] of integer levels drawn from ``model`` (in evaluation mode).

    ``engine``: ``cached`` (only the new positions at each draw) or ``naive`` (a full forward pass per draw); with the same
    ``generator`` seed both give the same images. ``conditioning``: the model's provided inputs (e.g. class labels
    ``[n]``). ``known`` ``[1 or n, C, H, W]`` with the bool ``known_mask`` ``[H, W]``: keep those pixels and fill in the
    rest. ``verify`` (cached engine): compare every draw's parameters with a full forward pass at the end and raise
    :class:`~arblocks.sampling.cached.SamplingError` if they differ. Non-finite parameters raise it too, naming the draw.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    if engine == "naive":
        return NaiveSampler(model, registry).sample(n, temperature, conditioning, known, known_mask, generator, progress)
    return CachedSampler(model, registry).sample(n, temperature, conditioning, known, known_mask, generator, progress, verify)




def sample_batches(model, n: int, batch_size: int, conditioning: dict[str, torch.Tensor] | None = None, **options):
    """``n`` images drawn ``batch_size`` at a time, in order, from one ``generator``: yields ``(start, images)``
    (images [b, C, H, W] on the CPU), so that memory holds one batch's caches and a caller can write each batch as it
    finishes. ``conditioning`` tensors are of ``n`` rows and are sliced per batch; ``options`` are
    :meth:`model.sample`'s (``engine``, ``temperature``, ``known``, ``known_mask``, ``generator``, ``progress``).
    One seed and one batch size give one set of images, with either engine."""
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        part = {k: v[start : start + count] for k, v in (conditioning or {}).items()}
        yield start, model.sample(count, conditioning=part, **options).cpu()
