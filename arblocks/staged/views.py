"""Views: deterministic functions of the image that a model of several stages can model first.

PixelCNN with auxiliary variables (Kolesnikov & Lampert, 2017) factors p(x) = p(a) p(x | a) with a = f(x) a
deterministic view of the image: a few-bit grayscale image, or a lower level of a resolution pyramid. A view type
is a registered kind (hook ``arblocks_register_views``), like blocks and orderings:

* ``Config``: a pydantic model deriving from :class:`ViewConfig` whose ``type`` is a ``Literal`` of the view's name;
* ``__init__(config, image)``: checks that the view fits the image (raising :class:`arblocks.BlockError` with the
  offending field otherwise) and sets ``self.output``, the :class:`arblocks.ImageSpec` of the view (channels,
  size, bits);
* ``__call__(x) -> a``: integer levels ``[B, C, H, W]`` to the view's integer levels, exactly (integer arithmetic,
  so a view computed on any device or in any batch gives the same levels);
* ``known_pixels(mask) -> mask`` (for completion): which of the view's pixels a bool mask ``[H, W]`` of known image
  pixels determines. The default serves views that map each pixel to the pixel at the same place; a view of another
  size overrides it (or completion through it is refused).

Built in: ``identity``, ``grayscale`` (``bits``) and ``downsample`` (average pooling by ``factor``, re-quantized).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from einops import reduce
from pydantic import Field

from ..core.hookspecs import hookimpl
from ..core.registry import base_of
from ..spec.errors import BlockError
from ..spec.models import Config, ImageSpec

#: ITU-R BT.601 luma weights, in thousandths (they sum to 1000)
LUMA = (299, 587, 114)


class ViewConfig(Config):
    """Base of view configs."""

    type: str


@base_of("view")
class View:
    """A deterministic view of the image; see the module's docstring."""

    Config: ClassVar[type[ViewConfig]]
    #: configs (without ``type``) that tests build the view with
    examples: ClassVar[list[dict]] = [{}]
    output: ImageSpec

    def __init__(self, config: ViewConfig, image: ImageSpec):
        self.config = config
        self.image = image

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def known_pixels(self, mask: torch.Tensor) -> torch.Tensor:
        """The view's pixels ``[h, w]`` that the known image pixels ``mask`` ``[H, W]`` determine."""
        if (self.output.height, self.output.width) != (self.image.height, self.image.width):
            raise NotImplementedError(f"view '{self.config.type}' does not say which of its pixels known image pixels determine")
        return mask


def requantize(total: torch.Tensor, scale_from: int, scale_to: int) -> torch.Tensor:
    """``total / scale_from`` mapped from [0, 1] to the nearest of ``scale_to + 1`` levels, in integers: round half up
    of ``total * scale_to / scale_from``."""
    return (2 * total * scale_to + scale_from) // (2 * scale_from)


class IdentityConfig(ViewConfig):
    """The image itself (the last stage of a model of several stages)."""

    type: Literal["identity"] = "identity"


class Identity(View):
    Config = IdentityConfig

    def __init__(self, config, image):
        super().__init__(config, image)
        self.output = image

    def __call__(self, x):
        return x


class GrayscaleConfig(ViewConfig):
    """The luma of a 3-channel image (0.299 R + 0.587 G + 0.114 B), quantized to `bits` bits."""

    type: Literal["grayscale"] = "grayscale"
    bits: int = Field(4, ge=1, le=16, description="Bit depth of the grayscale image (Kolesnikov & Lampert use 4).")


class Grayscale(View):
    Config = GrayscaleConfig
    examples: ClassVar[list[dict]] = [{}, {"bits": 2}]

    def __init__(self, config, image):
        super().__init__(config, image)
        if image.channels != 3:
            raise BlockError(f"grayscale needs a 3-channel (RGB) image, got {image.channels} channel(s)", field="type")
        self.output = image.model_copy(update={"channels": 1, "bits": config.bits})

    def __call__(self, x):
        weights = torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)
        luma = (x.long() * weights).sum(1, keepdim=True)  # in [0, 1000 * (levels - 1)]
        return requantize(luma, 1000 * (self.image.levels - 1), self.output.levels - 1)


class DownsampleConfig(ViewConfig):
    """Average pooling by `factor` in both directions, re-quantized to the image's bits (a pyramid's lower level)."""

    type: Literal["downsample"] = "downsample"
    factor: int = Field(2, ge=2, le=4096, description="Pooling factor; it must divide the image's height and width.")


class Downsample(View):
    Config = DownsampleConfig
    examples: ClassVar[list[dict]] = [{}, {"factor": 4}]

    def __init__(self, config, image):
        super().__init__(config, image)
        f = config.factor
        if image.height % f or image.width % f:
            raise BlockError(f"a factor of {f} does not divide the image's {image.height}x{image.width}", field="factor")
        self.output = image.model_copy(update={"height": image.height // f, "width": image.width // f})

    def __call__(self, x):
        f = self.config.factor
        total = reduce(x.long(), "b c (h p) (w q) -> b c h w", "sum", p=f, q=f)  # the sum of each f x f block
        return requantize(total, f * f, 1)

    def known_pixels(self, mask):
        f = self.config.factor
        return reduce(mask, "(h p) (w q) -> h w", "min", p=f, q=f)  # a level is known when its whole block is


@hookimpl
def arblocks_register_views(register):
    register(Identity)
    register(Grayscale)
    register(Downsample)
