"""Sampling: the engines that drive the incremental contract (cached and naive), the draws they share, and PNG grids.

Importing it installs :func:`sample_images` as the sampler behind :meth:`arblocks.ARModel.sample` (the core does not
import this wing; see docs/architecture.md).
"""

from ..core.model import install_sampler
from .cached import CachedSampler
from .draws import Sampler, SamplingError
from .grid import grid_image, load_image, save_grid
from .sample import ENGINES, NaiveSampler, sample_batches, sample_images

install_sampler(sample_images)

__all__ = ["ENGINES", "CachedSampler", "NaiveSampler", "Sampler", "SamplingError", "grid_image", "load_image", "sample_batches", "sample_images", "save_grid"]
