"""arblocks: autoregressive image models from declarative specs of registered, causality-checked blocks."""

from .attention_patterns import AttentionPattern
from .block import Block, BuildContext, ChannelMixing, Elementwise
from .builder import build_model
from .checkpoint import load_checkpoint
from .errors import ArblocksError, BlockError, Problem, RegistryError, SpecError
from .head import Head, PointwiseHead
from .hookspecs import hookimpl
from .inputs import InputType
from .model import ARModel
from .ordering import Ordering
from .plugins import get_registry, load_registry
from .sample import sample_images
from .spec import BlockConfig, HeadConfig, ImageSpec, InputConfig, ModelSpec, stream_field
from .stages import StagedModel, load_staged
from .streams import Causal, StreamInfo
from .validate import load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "ARModel", "ArblocksError", "AttentionPattern", "Block", "BlockConfig", "ChannelMixing", "BlockError", "BuildContext", "Causal", "Elementwise", "Head", "PointwiseHead",
    "HeadConfig", "ImageSpec", "InputConfig", "InputType", "ModelSpec", "Ordering", "Problem", "RegistryError",
    "SpecError", "StreamInfo", "build_model", "get_registry", "hookimpl", "load_registry", "load_spec", "parse_spec",
    "sample_images", "stream_field", "StagedModel", "load_staged", "load_checkpoint",
]
