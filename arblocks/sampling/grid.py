"""Sample grids as PNG files and tensors, and images read from PNG files (for completion)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


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
