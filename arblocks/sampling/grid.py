"""Sample grids as PNG files and tensors, and images read from PNG files (for completion)."""

from __future__ import annotations

import math
import os
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


#: the most images one grid PNG holds (a larger -n is written as .npy, batch by batch)
MAX_GRID = 4096


def writable_picture(path: str | Path) -> Path:
    """``path`` checked before any work: a file name with an image extension Pillow writes (or .npy), not a folder, in a folder
    that exists or can be made, and can be written to (ValueError naming the problem otherwise)."""
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'samples.png'}")
    Image.init()
    kind = Image.registered_extensions().get(path.suffix.lower())
    if path.suffix.lower() != ".npy" and (kind is None or kind not in Image.SAVE):
        raise ValueError(f"{path} has no image extension that can be written (.png for a grid, .npy for the levels as an array)")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: {folder} is {'not a folder' if not folder.is_dir() else 'not writable'}")
    return path


def load_image(path: str | Path, channels: int, height: int, width: int, bits: int) -> torch.Tensor:
    """A PNG as integer levels [1, C, H, W] of the given bit depth (its size is checked before its pixels are decoded,
    so a huge or decompression-bomb file is refused cheaply)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{path} is refused as a decompression bomb ({error})") from None
    with im:
        if im.size != (width, height):
            raise ValueError(f"{path} is {im.size[0]}x{im.size[1]}, the model's images are {width}x{height}")
        im = im.convert("L" if channels == 1 else "RGB")
        values = torch.tensor(list(im.getdata()), dtype=torch.long).reshape(height, width, -1).permute(2, 0, 1)
    return (values >> (8 - bits))[None]


class ImageWriter:
    """Where ``sample`` puts ``n`` images as their batches finish: a ``.npy`` array of levels [n, C, H, W] (uint8, or
    uint16 for more than 256 levels) written batch by batch through a memory map, or a grid PNG drawn at the end
    (at most :data:`MAX_GRID` images)."""

    def __init__(self, path: str | Path, n: int, shape: tuple[int, int, int], levels: int):
        self.path, self.n, self.levels, self.shape = Path(path), n, levels, shape
        self.array = self.parts = None
        if self.path.suffix.lower() == ".npy":
            import numpy as np

            self.path.parent.mkdir(parents=True, exist_ok=True)
            dtype = np.uint8 if levels <= 256 else np.uint16
            self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=dtype, shape=(n, *shape))
        elif n > MAX_GRID:
            raise ValueError(f"a grid PNG holds at most {MAX_GRID} images, not {n}: write them to a .npy file instead")
        else:
            self.parts = []

    def add(self, start: int, images: torch.Tensor) -> None:
        if self.array is not None:
            self.array[start : start + len(images)] = images.numpy()
            self.array.flush()
        else:
            self.parts.append(images)

    def close(self) -> str:
        """Finish the file; say what was written."""
        if self.array is not None:
            del self.array
            return f"{self.n} images as an array of levels {list((self.n, *self.shape))}"
        width, height = save_grid(torch.cat(self.parts), self.path, self.levels)
        return f"{self.n} samples ({width}x{height})"
