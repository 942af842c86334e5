"""Sampling: a naive engine (one full forward pass per position, or per sub-pixel for per-channel heads), image
completion, and PNG grids.

The engine follows the spec's ordering. It is an object of its own so that a cached engine (only the new position
computed) can replace it later without changing its callers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .model import ARModel
from .plugins import get_registry


class NaiveSampler:
    def __init__(self, model: ARModel, registry=None):
        registry = registry or get_registry()
        self.model = model.eval()
        image = model.image
        self.joint = registry.heads[model.spec.head.type].cls.joint
        from .ordering import ordering_of

        rank = ordering_of(model.spec, registry).rank(image.height, image.width)
        self.positions = [divmod(int(i), image.width) for i in torch.argsort(rank.flatten())]

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
        model, image = self.model, self.model.image
        device = next(model.parameters()).device
        x = torch.zeros(n, image.channels, image.height, image.width, dtype=torch.long, device=device)
        if known is not None:
            x = known.to(device).long().expand(n, -1, -1, -1).clone()
        todo = [(r, c) for r, c in self.positions if known_mask is None or not bool(known_mask[r, c])]
        steps = [(r, c, ch) for r, c in todo for ch in ([None] if self.joint else range(image.channels))]
        iterator = steps
        if progress:
            from tqdm import tqdm

            iterator = tqdm(steps, unit="position", dynamic_ncols=True)
        for r, c, ch in iterator:
            params = model(x, **(conditioning or {}))
            draw = model.head.sample(params, generator=generator, temperature=temperature)
            if ch is None:
                x[:, :, r, c] = draw[:, :, r, c]
            else:
                x[:, ch, r, c] = draw[:, ch, r, c]
        return x


def save_grid(images: torch.Tensor, path: str | Path, levels: int, columns: int | None = None, pad: int = 2, scale: int | None = None) -> tuple[int, int]:
    """A PNG grid of integer-level images [N, C, H, W] (grey for C = 1, RGB for C = 3)."""
    from PIL import Image

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
    array = canvas.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0] if c == 1 else array, mode="L" if c == 1 else "RGB")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return picture.size


def load_image(path: str | Path, channels: int, height: int, width: int, bits: int) -> torch.Tensor:
    """A PNG as integer levels [1, C, H, W] of the given bit depth."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (width, height):
            raise ValueError(f"{path} is {im.size[0]}x{im.size[1]}, the model's images are {width}x{height}")
        values = torch.tensor(list(im.getdata()), dtype=torch.long).reshape(height, width, -1).permute(2, 0, 1)
    return (values >> (8 - bits))[None]
