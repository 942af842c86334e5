"""Transformations: the bijections of the image that Distribution Augmentation trains on.

Distribution Augmentation (Jun et al., 2020) trains on transformed images while telling the model which
transformation was applied, and evaluates and samples under the identity. A transformation type is a registered kind
(hook ``arblocks_register_transformations``), like blocks and views:

* ``Config``: a pydantic model deriving from :class:`TransformationConfig` whose ``type`` is a ``Literal`` of the
  transformation's name (``probability``, the chance that training draws a choice other than the identity, is shared);
* ``__init__(config, image)``: checks that the transformation applies to the image (raising
  :class:`arblocks.BlockError` with the offending field otherwise) and sets ``choices``, the number of choices;
  choice 0 is the identity;
* ``apply(x, choice) -> x'``: integer levels ``[B, C, H, W]`` to the same shape, each image under its own choice
  (``choice``: ``[B]`` integers). Each choice must be a bijection of the image's sub-pixels (a permutation of
  positions and channels), so that a model of the transformed images is a model of the images.

Built in: ``rotation`` (4: by 0, 90, 180, 270 degrees), ``transpose`` (2), ``reverse`` (2: the pixels in reverse
raster order, i.e. a rotation by 180 degrees, as in the official code), ``color_permutation`` (6 orders of RGB) and
``jigsaw`` (24 orders of the 2x2 grid of quadrants).
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch

from ..core.augmentation import Transformation, TransformationConfig
from ..core.hookspecs import hookimpl
from ..spec.errors import BlockError
from ..spec.models import ImageSpec


def _square(name: str, image: ImageSpec) -> None:
    if image.height != image.width:
        raise BlockError(f"{name} needs a square image, got {image.height}x{image.width}", field="type")


class RotationConfig(TransformationConfig):
    """Rotation by k x 90 degrees (counter-clockwise), k = 0..3."""

    type: Literal["rotation"] = "rotation"


class Rotation(Transformation):
    Config = RotationConfig

    def __init__(self, config, image):
        super().__init__(config, image)
        _square("rotation", image)
        self.choices = 4

    def one(self, x, k):
        return torch.rot90(x, k, dims=(2, 3))


class TransposeConfig(TransformationConfig):
    """Rows and columns swapped (choice 1)."""

    type: Literal["transpose"] = "transpose"


class Transpose(Transformation):
    Config = TransposeConfig

    def __init__(self, config, image):
        super().__init__(config, image)
        _square("transpose", image)
        self.choices = 2

    def one(self, x, k):
        return x.transpose(2, 3)


class ReverseConfig(TransformationConfig):
    """The pixels in reverse raster order (choice 1): flipped vertically and horizontally (a rotation by 180 degrees)."""

    type: Literal["reverse"] = "reverse"


class Reverse(Transformation):
    Config = ReverseConfig

    def __init__(self, config, image):
        super().__init__(config, image)
        self.choices = 2

    def one(self, x, k):
        return x.flip(2, 3)


class ColorPermutationConfig(TransformationConfig):
    """The colour channels in one of their 6 orders (choice 0: R, G, B)."""

    type: Literal["color_permutation"] = "color_permutation"


class ColorPermutation(Transformation):
    Config = ColorPermutationConfig
    ORDERS = list(itertools.permutations(range(3)))  # (0, 1, 2) first: the identity

    def __init__(self, config, image):
        super().__init__(config, image)
        if image.channels != 3:
            raise BlockError(f"color_permutation needs a 3-channel (RGB) image, got {image.channels} channel(s)", field="type")
        self.choices = 6

    def one(self, x, k):
        return x[:, list(self.ORDERS[k])]


class JigsawConfig(TransformationConfig):
    """The four quadrants of the image (a 2x2 grid) in one of their 24 orders (choice 0: as they are)."""

    type: Literal["jigsaw"] = "jigsaw"


class Jigsaw(Transformation):
    Config = JigsawConfig
    ORDERS = list(itertools.permutations(range(4)))  # which quadrant goes to places 0..3 (raster order of the grid)

    def __init__(self, config, image):
        super().__init__(config, image)
        if image.height % 2 or image.width % 2:
            raise BlockError(f"jigsaw cuts the image into a 2x2 grid and needs an even height and width, got {image.height}x{image.width}", field="type")
        self.choices = 24

    def one(self, x, k):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        tiles = [x[:, :, r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(2) for c in range(2)]
        placed = [tiles[i] for i in self.ORDERS[k]]
        return torch.cat([torch.cat(placed[:2], dim=3), torch.cat(placed[2:], dim=3)], dim=2)


@hookimpl
def arblocks_register_transformations(register):
    register(Rotation)
    register(Transpose)
    register(Reverse)
    register(ColorPermutation)
    register(Jigsaw)
