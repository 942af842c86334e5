"""Transforms of integer-level images: grayscale, centre crop, resize, bit-depth reduction (applied once, when a split
is loaded) and a random crop and horizontal flip (drawn afresh for every training batch).

Every transform maps levels to levels (uint8 in, uint8 out), so the model still sees the discrete values whose
likelihood it reports. They are data preparation, not Distribution Augmentation: the model is not told which flip
or crop an image got, and evaluation sees the deterministic part only (a random crop becomes the centre crop).

Order: grayscale, centre crop, resize, bits; then, for training batches, random crop and flip.

- ``resize`` ``area`` (default): each target pixel is the mean of the source area it covers, partial pixels weighted
  by the fraction covered (exact, in float64), rounded to the nearest level, halves to even. ``nearest``: the
  source pixel under the target pixel's centre. Both keep values within the source's levels.
- ``grayscale``: ITU-R 601-2 luma, ``(299 R + 587 G + 114 B) / 1000`` rounded half up, as an integer.
- ``bits``: keep the high ``bits`` bits of each level (8-bit 0..255 to 5-bit 0..31, as Glow's CelebA).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .base import DataError, ImageData


def _size(value):
    """``16``, ``"16"``, ``"16x12"``, ``[16, 12]`` -> 16 or (16, 12)."""
    if isinstance(value, str):
        parts = value.lower().split("x")
        if not all(p.strip().isdigit() for p in parts) or len(parts) > 2:
            raise ValueError(f"a size is N or HxW (e.g. 16 or 16x12), got {value!r}")
        value = [int(p) for p in parts]
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    return tuple(value) if isinstance(value, list | tuple) else value


Size = Annotated[int | tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]], BeforeValidator(_size)]


def pair(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


class Transforms(BaseModel):
    """The transforms of a run's data (each off by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    grayscale: bool = Field(False, description="RGB to one channel of ITU-R 601-2 luma.")
    crop: Size | None = Field(None, description="Centre crop to N or HxW pixels (before any resize).")
    resize: Size | None = Field(None, description="Resize to N or HxW pixels (after the centre crop).")
    resize_mode: Literal["area", "nearest"] = Field("area", description="area: the exact mean of the covered source area, rounded; nearest: the source pixel at the centre.")
    bits: int | None = Field(None, ge=1, le=8, description="Reduce the levels to this bit depth (keep the high bits), e.g. 5 for 5-bit CelebA.")
    random_crop: Size | None = Field(None, description="Training batches: a random N or HxW window of each image (evaluation: the centre one).")
    hflip: bool = Field(False, description="Training batches: flip each image left-right with probability 1/2.")

    def is_identity(self) -> bool:
        return self == Transforms()

    @property
    def per_batch(self) -> bool:
        return self.random_crop is not None or self.hflip


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> [N, 1, H, W] luma levels."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise DataError(f"grayscale needs RGB images (3 channels), got {images.shape[1]}")
    r, g, b = images.long().unbind(1)
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).to(torch.uint8)[:, None]


def centre_crop(images: torch.Tensor, size: Size) -> torch.Tensor:
    height, width = pair(size)
    h, w = images.shape[-2:]
    if height > h or width > w:
        raise DataError(f"cannot crop {h}x{w} images to {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return images[..., top : top + height, left : left + width]


def area_weights(source: int, target: int) -> torch.Tensor:
    """[target, source] float64: row i averages the source interval [i, i + 1) * source / target, partial pixels
    weighted by the fraction of them it covers (each row sums to 1)."""
    edges = torch.arange(target + 1, dtype=torch.float64) * source / target
    start, end = edges[:-1, None], edges[1:, None]  # [target, 1]
    pixel = torch.arange(source, dtype=torch.float64)[None]  # [1, source]
    overlap = (torch.minimum(end, pixel + 1) - torch.maximum(start, pixel)).clamp(min=0)
    return overlap / overlap.sum(1, keepdim=True)


def resize(images: torch.Tensor, size: Size, mode: str = "area") -> torch.Tensor:
    """uint8 [N, C, H, W] -> [N, C, height, width] levels."""
    height, width = pair(size)
    h, w = images.shape[-2:]
    if (h, w) == (height, width):
        return images
    if mode == "nearest":
        rows = ((torch.arange(height) + 0.5) * h / height).long().clamp(max=h - 1)
        cols = ((torch.arange(width) + 0.5) * w / width).long().clamp(max=w - 1)
        return images[..., rows[:, None], cols[None, :]]
    out = torch.empty(*images.shape[:-2], height, width, dtype=torch.uint8)
    rows, cols = area_weights(h, height), area_weights(w, width)
    for start in range(0, len(images), 1024):  # bounded float64 memory for large sets
        chunk = images[start : start + 1024].double()
        mean = torch.einsum("ih,nchw,jw->ncij", rows, chunk, cols)  # rows' weights, the image, columns' weights
        out[start : start + 1024] = mean.round().clamp(0, 255).to(torch.uint8)
    return out


def reduce_bits(data: ImageData, bits: int) -> ImageData:
    if bits > data.bits:
        raise DataError(f"cannot reduce {data.bits}-bit data to {bits} bits")
    return ImageData(data.images >> (data.bits - bits), data.labels, bits)


def apply_fixed(data: ImageData, transforms: Transforms, crop_later: bool = False) -> ImageData:
    """The deterministic transforms, applied once to a loaded split; a random crop becomes the centre window unless
    ``crop_later`` (training batches are cropped one by one)."""
    images = data.images
    if transforms.grayscale:
        images = to_grayscale(images)
    if transforms.crop is not None:
        images = centre_crop(images, transforms.crop)
    if transforms.resize is not None:
        images = resize(images, transforms.resize, transforms.resize_mode)
    if transforms.random_crop is not None and not crop_later:
        images = centre_crop(images, transforms.random_crop)
    data = ImageData(images.contiguous(), data.labels, data.bits)
    return reduce_bits(data, transforms.bits) if transforms.bits is not None else data


def apply_batch(images: torch.Tensor, transforms: Transforms, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random transforms of a training batch [B, C, H, W]: one crop window and one coin per image, drawn from
    ``generator`` (default torch's global generator, which the training loop seeds at every step)."""
    if transforms.random_crop is not None:
        height, width = pair(transforms.random_crop)
        h, w = images.shape[-2:]
        if height > h or width > w:
            raise DataError(f"cannot crop {h}x{w} images to a random {height}x{width} window")
        top = torch.randint(0, h - height + 1, (len(images),), generator=generator)
        left = torch.randint(0, w - width + 1, (len(images),), generator=generator)
        rows = top[:, None] + torch.arange(height)  # [B, height]
        cols = left[:, None] + torch.arange(width)  # [B, width]
        batch = torch.arange(len(images))[:, None, None]
        images = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, height, width, C] -> NCHW
    if transforms.hflip:
        flip = torch.rand(len(images), generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


def output_size(shape: tuple[int, int, int], transforms: Transforms) -> tuple[int, int, int]:
    """(C, H, W) of images after the transforms (a training batch's, after its random crop)."""
    channels, height, width = shape
    if transforms.grayscale:
        channels = 1
    for size in (transforms.crop, transforms.resize, transforms.random_crop):
        if size is not None:
            height, width = pair(size)
    return channels, height, width
