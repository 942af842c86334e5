"""A colour palette (k-means clusters of RGB values), as Image GPT uses to turn each pixel into one token.

The palette is fitted on training pixels, saved in the checkpoint, and used to quantize the evaluation data and to turn
sampled tokens back into colours. Bits per dimension of a palette model count one dimension per pixel (a token) of the
*quantized* image: they are not comparable with bits per sub-pixel of the lossless image.
"""

from __future__ import annotations

import torch

from .base import DataError, ImageData


def fit_palette(images: torch.Tensor, clusters: int, seed: int = 0, iterations: int = 25, max_pixels: int = 200_000) -> torch.Tensor:
    """k-means on the RGB values of uint8 images [N, 3, H, W]; returns the cluster centres [clusters, 3] (float)."""
    if images.shape[1] != 3:
        raise DataError(f"a palette clusters RGB colours; the data has {images.shape[1]} channel(s)")
    generator = torch.Generator().manual_seed(seed)
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3).float()
    if len(pixels) > max_pixels:
        pixels = pixels[torch.randperm(len(pixels), generator=generator)[:max_pixels]]
    if len(pixels) < clusters:
        raise DataError(f"{len(pixels)} pixels cannot make {clusters} colours")
    centres = pixels[torch.randperm(len(pixels), generator=generator)[:clusters]].clone()
    for _ in range(iterations):
        assignment = torch.cdist(pixels, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, pixels)
        counts = torch.bincount(assignment, minlength=clusters).float()
        empty = counts == 0
        centres = torch.where(empty[:, None], pixels[torch.randint(len(pixels), (clusters,), generator=generator)], sums / counts.clamp(min=1)[:, None])
    return centres


def quantize(images: torch.Tensor, palette: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """uint8 RGB images [N, 3, H, W] -> tokens [N, 1, H, W] (int16): the index of the nearest palette colour."""
    n, _, h, w = images.shape
    out = torch.empty(n, 1, h, w, dtype=torch.int16)
    for start in range(0, n, chunk):
        pixels = images[start : start + chunk].permute(0, 2, 3, 1).reshape(-1, 3).float()
        out[start : start + chunk] = torch.cdist(pixels, palette.float()).argmin(1).reshape(-1, 1, h, w).to(torch.int16)
    return out


def to_palette_data(data: ImageData, palette: torch.Tensor) -> ImageData:
    clusters = len(palette)
    return ImageData(quantize(data.images, palette), data.labels, max(1, (clusters - 1).bit_length()))


def colours(tokens: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """Tokens [N, 1, H, W] -> uint8 RGB [N, 3, H, W]."""
    return palette.round().clamp(0, 255).to(torch.uint8)[tokens[:, 0].long()].permute(0, 3, 1, 2)
