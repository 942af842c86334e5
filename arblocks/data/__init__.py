"""Image datasets: the dataset-type contract, the built-in sources and the preparation of images for a spec."""

from .base import DataError, DatasetType, ImageData, parse_source, prepare
from .loading import load_data, load_raw

__all__ = ["DataError", "DatasetType", "ImageData", "load_data", "load_raw", "parse_source", "prepare"]
