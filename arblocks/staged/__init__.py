"""Models of several variables: views of the image and models of several stages (PixelCNN with auxiliary
variables), and the built-in transformations of Distribution Augmentation.

It sits above sampling (a staged model samples stage by stage); the transformation contract that the builder uses is
the core's (:mod:`arblocks.core.augmentation`).
"""

from .stages import StagedModel, build_any, build_staged, load_staged, parse_any, parse_staged
from .views import View, ViewConfig

__all__ = ["StagedModel", "View", "ViewConfig", "build_any", "build_staged", "load_staged", "parse_any", "parse_staged"]
