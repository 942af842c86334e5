"""Loading a split from a source string: as stored, or fitted to a spec's image (through a palette for token models)."""

from __future__ import annotations

from ..spec.models import ImageSpec
from .base import DataError, ImageData, parse_source, prepare
from .palette import to_palette_data


def load_raw(source: str, split: str, key: str | None = None, registry=None) -> ImageData:
    """A split as the source stores it, before fitting it to a spec."""
    dataset = parse_source(source, registry)
    if key is not None:
        dataset.config = dataset.config.model_copy(update={"key": key})
    data = dataset.load(split)
    if len(data) == 0:
        raise DataError(f"{source}: the {split} split holds no images")
    return data


def load_data(
    source: str, split: str, image: ImageSpec, binarize: bool = False, key: str | None = None, registry=None, palette=None
) -> ImageData:
    """A split fitted to the spec's image; with a ``palette`` ([K, 3] colours) each RGB pixel becomes one token."""
    data = load_raw(source, split, key, registry)
    if palette is not None:
        data = to_palette_data(data, palette)
        if data.bits != image.bits:
            raise DataError(f"a palette of {len(palette)} colours makes {data.bits}-bit tokens, but the spec models {image.bits}-bit images")
    return prepare(data, image, binarize)
