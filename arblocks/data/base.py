"""The dataset-type contract, source strings, and the preparation of images for a spec.

A source string names a registered dataset type and, for most, a path: ``digits``, ``npz:PATH``, ``mnist:PATH``,
``cifar10:PATH``, ``folder:PATH``. A dataset type subclasses :class:`DatasetType`, has a ``Config`` with a ``type``
Literal and a ``path``, and returns the images of a split as uint8 ``[N, C, H, W]`` with their bit depth.
Datasets are held in memory: the images of these models are small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field

from ..core.plugins import get_registry
from ..core.registry import base_of
from ..spec.errors import ArblocksError, did_you_mean
from ..spec.models import Config, ImageSpec


class DataError(ArblocksError):
    """A dataset is missing, malformed, or does not fit the spec."""


class DatasetConfig(Config):
    type: str
    path: str | None = Field(None, description="Where the data lies.")
    key: str | None = Field(None, description="Array name inside the file, where the format has several (npz).")


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor | None  # long [N]
    bits: int  # bit depth of the values

    def __len__(self) -> int:
        return len(self.images)


@base_of("dataset")
class DatasetType:
    Config: ClassVar[type[DatasetConfig]]
    #: whether the source string must carry a path (``npz:PATH``)
    needs_path: ClassVar[bool] = True
    #: whether it may carry one (``digits`` takes none: ``digits:extra`` is a mistake, not ignored)
    takes_path: ClassVar[bool] = True

    def __init__(self, config: DatasetConfig):
        self.config = config

    def load(self, split: str) -> ImageData:
        raise NotImplementedError


def parse_source(source: str, registry=None) -> DatasetType:
    """``"npz:data/mnist.npz"`` -> the registered dataset type, configured."""
    registry = registry or get_registry()
    name, _, path = source.partition(":")
    entry = registry.entries["dataset"].get(name)
    if entry is None:
        known = sorted(registry.entries["dataset"])
        raise DataError(f"unknown data source '{name}'{did_you_mean(name, known)}; known: {', '.join(known)} (e.g. npz:PATH)")
    cls = entry.cls
    if cls.needs_path and not path:
        raise DataError(f"data source '{name}' needs a path: {name}:PATH")
    if path and not cls.takes_path:
        raise DataError(f"data source '{name}' takes no path (got '{source}'): write {name}")
    return cls(cls.Config(type=name, path=path or None))


def to_nchw(array, source: str) -> torch.Tensor:
    """uint8 images as [N, H, W] or [N, H, W, C] (channels last, C <= 4) or [N, C, H, W] -> [N, C, H, W]."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype != np.uint8:  # other integer types are read as 8-bit levels when every value is one (docs/training.md)
        if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            raise DataError(f"{source}: expected integer images (uint8 levels), got {array.dtype}")
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise DataError(f"{source}: {array.dtype} values from {low} to {high} are not 8-bit levels (0..255); rescale them to uint8")
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    images = torch.from_numpy(array if array.flags.writeable else array.copy())
    if images.dim() == 3:
        return images[:, None]
    if images.dim() == 4 and images.shape[-1] <= 4 and images.shape[1] > 4:
        return images.permute(0, 3, 1, 2).contiguous()
    if images.dim() == 4:
        return images
    raise DataError(f"{source}: expected images of shape [N, H, W], [N, H, W, C] or [N, C, H, W], got {list(images.shape)}")


def bits_of(images: torch.Tensor) -> int:
    return 1 if images.numel() and int(images.max()) <= 1 else 8


def prepare(data: ImageData, image: ImageSpec, binarize: bool = False, spatial: tuple[int, int] | None = None) -> ImageData:
    """Fit the data to the spec's image: binarize or reduce the bit depth, and check the shape (``spatial``: the
    height and width the images must have instead of the spec's, for training images cropped batch by batch)."""
    images, bits = data.images, data.bits
    expected = (image.channels, *(spatial or (image.height, image.width)))
    if tuple(images.shape[1:]) != expected and tuple(images.permute(0, 3, 1, 2).shape[1:]) == expected:
        images = images.permute(0, 3, 1, 2).contiguous()  # tiny channels-last images (4x4x3) read as channels-first
    if tuple(images.shape[1:]) != expected:  # the shape first: it is the likelier mistake
        raise DataError(
            f"the data's images are {'x'.join(map(str, images.shape[1:]))} (channels x height x width), "
            f"but the spec's image is {'x'.join(map(str, expected))}"
            + ("; --resize, --crop or --grayscale fit the data to it (docs/training.md)" if images.dim() == 4 else "")
        )
    if binarize and bits > 1:
        images, bits = (images >= 2 ** (bits - 1)).to(torch.uint8), 1
    if image.bits < bits:
        high = int(images.max()) if images.numel() else 0
        if 1 < high < 2**image.bits and image.bits > 1:
            raise DataError(
                f"the data's values lie in 0..{high}, which looks like {image.bits}-bit levels already, but 8-bit data is reduced "
                f"to the spec's {image.bits} bits by keeping its high bits, which would turn it into zeros; store the images "
                f"scaled to 0..255 (e.g. levels * {255 // (2**image.bits - 1)})"
            )
        images = images >> (bits - image.bits)
    elif image.bits > bits:
        if image.bits > 8:  # more levels than any pixel value: the spec models palette tokens (Image GPT)
            raise DataError(f"the spec models {image.bits}-bit tokens, more levels than 8-bit pixels have: it is a palette model; "
                            f"train it with --palette {2**image.bits} (k-means colours fitted on the training pixels)")
        raise DataError(f"the data has {bits}-bit values but the spec models {image.bits}-bit images; set image.bits to {bits} in the spec")
    return ImageData(images, data.labels, image.bits)


