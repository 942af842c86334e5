"""Sampling: the one entry point :func:`sample_images`, two engines, and PNG grids.

* ``cached`` (the default, :mod:`arblocks.cached`): at every draw only the positions that have just become computable
  are computed, block by block; its parameters are checked against one full forward pass at the end.
* ``naive``: one full forward pass per draw (per sub-pixel for per-channel heads, per pixel for joint heads). The
  reference the cached engine is tested against.

Both follow the spec's ordering, fill in the unknown pixels of a completion, and draw through the same function, so
that one generator seed gives both engines the same images.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from .cached import CachedSampler
from .draws import Sampler, SamplingError, draw_at, start_images
from .model import ARModel

__all__ = ["CachedSampler", "NaiveSampler", "SamplingError", "grid_image", "load_image", "sample_images", "save_grid"]

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
    :class:`~arblocks.cached.SamplingError` if they differ. Non-finite parameters raise it too, naming the draw.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine '{engine}': choose one of {', '.join(ENGINES)}")
    if engine == "naive":
        return NaiveSampler(model, registry).sample(n, temperature, conditioning, known, known_mask, generator, progress)
    return CachedSampler(model, registry).sample(n, temperature, conditioning, known, known_mask, generator, progress, verify)


def save_grid(images: torch.Tensor, path: str | Path, levels: int, columns: int | None = None, pad: int = 2, scale: int | None = None) -> tuple[int, int]:
    """A PNG grid of integer-level images [N, C, H, W] (grey for C = 1, RGB for C = 3)."""
    from PIL import Image

    canvas = grid_image(images, levels, columns, pad, scale)
    c = canvas.shape[0]
    array = canvas.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return picture.size


def grid_image(images: torch.Tensor, levels: int, columns: int | None = None, pad: int = 2, scale: int | None = None) -> torch.Tensor:
    """Integer-level images [N, C, H, W] laid out as one uint8 picture [C, H', W'] on white (C = 1 or 3)."""
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"a grid shows 1- or 3-channel images, got {c} channels")
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    scale = scale or max(1, 64 // max(h, w))
    pixels = (images.float() * (255.0 / (levels - 1))).round().clamp(0, 255).to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = torch.full((c, rows * cell_h + pad, columns * cell_w + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, pad + r * cell_h : pad + r * cell_h + h * scale, pad + col * cell_w : pad + col * cell_w + w * scale] = pixels[i]
    return canvas


def load_image(path: str | Path, channels: int, height: int, width: int, bits: int) -> torch.Tensor:
    """A PNG as integer levels [1, C, H, W] of the given bit depth."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (width, height):
            raise ValueError(f"{path} is {im.size[0]}x{im.size[1]}, the model's images are {width}x{height}")
        values = torch.tensor(list(im.getdata()), dtype=torch.long).reshape(height, width, -1).permute(2, 0, 1)
    return (values >> (8 - bits))[None]
