"""Image datasets: the dataset-type contract, the built-in sources and the preparation of images for a spec."""

from .base import DatasetType, ImageData, load_data, parse_source, prepare

__all__ = ["DatasetType", "ImageData", "load_data", "parse_source", "prepare"]
