"""arblocks: autoregressive image models from declarative specs of registered, causality-checked blocks.

The package is laid out in wings, each importing only the ones below it (docs/architecture.md):
``spec`` < ``core`` < ``attention`` < ``blocks``, ``heads`` < ``causality``, ``sampling`` < ``staged``, ``data``
< ``training`` < ``testing``, ``weights`` < ``cli``. The names below are the public API.
"""

from . import _moved
from .attention import AttentionPattern
from .core import (
    ARModel,
    Block,
    BuildContext,
    Causal,
    ChannelMixing,
    DependencyMask,
    Elementwise,
    Head,
    InputType,
    Ordering,
    PointwiseHead,
    StreamInfo,
    build_model,
    get_registry,
    hookimpl,
    load_registry,
    load_spec,
    parse_spec,
)
from .core.plugins import arblocks_version
from .data import ImageData, load_data
from .data.transforms import Transforms
from .sampling import sample_images
from .spec import ArblocksError, BlockConfig, BlockError, HeadConfig, ImageSpec, InputConfig, ModelSpec, Problem, RegistryError, SpecError, stream_field
from .staged import StagedModel, load_staged
from .training import Callback, TrainConfig, fit, load_checkpoint, save_checkpoint
from .weights import export, from_pretrained, import_weights

_moved.install()

__version__ = arblocks_version() or "0.1.0"

__all__ = [
    "ARModel", "ArblocksError", "AttentionPattern", "Block", "BlockConfig", "BlockError", "BuildContext", "Callback", "Causal", "ChannelMixing", "DependencyMask", "Elementwise",
    "Head", "HeadConfig", "ImageData", "ImageSpec", "InputConfig", "InputType", "ModelSpec", "Ordering", "PointwiseHead", "Problem", "RegistryError", "SpecError",
    "StagedModel", "StreamInfo", "TrainConfig", "Transforms", "build_model", "export", "fit", "from_pretrained", "get_registry", "hookimpl", "import_weights", "load_checkpoint", "load_data",
    "load_registry", "load_spec", "load_staged", "parse_spec", "sample_images", "save_checkpoint", "stream_field",
]
