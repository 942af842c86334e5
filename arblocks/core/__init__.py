"""The composition core: streams and causal states, the contracts of blocks, heads, inputs, orderings and
transformations, the registry and plugin loading, validation against it, the builder and the built model.

It imports only :mod:`arblocks.spec`. Built-in blocks, heads, patterns and the engines that drive the contracts
(sampling, the causality check, training) are wings above it.
"""

from .augmentation import Transformation, TransformationConfig
from .block import Block, BuildContext, ChannelMixing, DependencyMask, Elementwise
from .builder import build_model
from .head import Head, PointwiseHead
from .hookspecs import hookimpl
from .incremental import Reach, Region
from .inputs import InputType
from .layers import Conv, conv_mask, data_dependent_init
from .model import ARModel
from .ordering import Ordering, OrderingConfig, ordering_of
from .plugins import get_registry, load_registry
from .registry import Registry
from .streams import Causal, StreamInfo
from .validate import load_spec, parse_spec

__all__ = [
    "ARModel", "Block", "BuildContext", "Causal", "ChannelMixing", "Conv", "DependencyMask", "Elementwise", "Head", "InputType", "Ordering", "OrderingConfig",
    "PointwiseHead", "Reach", "Region", "Registry", "StreamInfo", "Transformation", "TransformationConfig", "build_model", "conv_mask",
    "data_dependent_init", "get_registry", "hookimpl", "load_registry", "load_spec", "ordering_of", "parse_spec",
]
