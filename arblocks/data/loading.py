"""Loading a split from a source string: as stored, or fitted to a spec's image (through a palette for token models)."""

from __future__ import annotations

from ..spec.models import ImageSpec
from .base import DataError, ImageData, parse_source, prepare
from .palette import to_palette_data
from .transforms import Transforms, apply_fixed, pair


def load_raw(source: str | ImageData, split: str, key: str | None = None, registry=None, transforms: Transforms | None = None,
             crop_later: bool = False) -> ImageData:
    """A split as the source stores it, after the deterministic ``transforms`` (``crop_later``: keep the full size
    for a random crop of each training batch). ``source`` is a source string, or the split itself as :class:`ImageData`."""
    if isinstance(source, ImageData):
        data = source
    else:
        dataset = parse_source(source, registry)
        if key is not None:
            dataset.config = dataset.config.model_copy(update={"key": key})
        data = dataset.load(split)
    if len(data) == 0:
        raise DataError(f"{'the given data' if isinstance(source, ImageData) else source}: the {split} split holds no images")
    return apply_fixed(data, transforms, crop_later) if transforms is not None and not transforms.is_identity() else data


def load_data(
    source: str | ImageData, split: str, image: ImageSpec, binarize: bool = False, key: str | None = None, registry=None, palette=None,
    transforms: Transforms | None = None, crop_later: bool = False,
) -> ImageData:
    """A split fitted to the spec's image; with a ``palette`` ([K, 3] colours) each RGB pixel becomes one token.
    ``transforms``: applied first; ``crop_later``: the split of a training run, whose batches get the random crop
    (the images keep their full size here)."""
    data = load_raw(source, split, key, registry, transforms, crop_later)
    if palette is not None:
        data = to_palette_data(data, palette)
        if data.bits != image.bits:
            raise DataError(f"a palette of {len(palette)} colours makes {data.bits}-bit tokens, but the spec models {image.bits}-bit images")
    crop_later = crop_later and transforms is not None and transforms.random_crop is not None
    if crop_later:
        height, width = pair(transforms.random_crop)
        if (height, width) != (image.height, image.width):
            raise DataError(f"--random-crop {height}x{width} does not give the spec's {image.height}x{image.width} images")
        if data.images.shape[-2] < height or data.images.shape[-1] < width:
            raise DataError(f"the images are {data.images.shape[-2]}x{data.images.shape[-1]}, smaller than the random crop {height}x{width}")
    return prepare(data, image, binarize, spatial=tuple(data.images.shape[-2:]) if crop_later else None)
