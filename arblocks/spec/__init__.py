"""The spec as data: its pydantic models, reading a spec file, problems by JSON path, size limits and edits.

The bottom wing: it imports no other part of arblocks. Validation against the registered types is the core's
(:mod:`arblocks.core.validate`), which builds on the models and problems here.
"""

from .edit import apply_overrides, visit
from .errors import ArblocksError, BlockError, Problem, RegistryError, SpecError, SpecWarning, did_you_mean, json_path
from .limits import MAX_DEPTH, MAX_LAYERS, MAX_PARAMETERS, check_size
from .models import (
    BLOCKS_MARK,
    IMAGE_STREAM,
    STREAM_MARK,
    TYPED_MARK,
    AugmentationConfig,
    BlockConfig,
    Config,
    HeadConfig,
    ImageSpec,
    InputConfig,
    ModelSpec,
    NodeConfig,
    PopRef,
    StageConfig,
    StagedSpec,
    StreamName,
    StreamRef,
    StreamRefs,
    blocks_field,
    is_staged,
    stream_field,
    typed_field,
)
from .reading import pydantic_problems, read_spec_file

__all__ = [
    "BLOCKS_MARK", "IMAGE_STREAM", "MAX_DEPTH", "MAX_LAYERS", "MAX_PARAMETERS", "STREAM_MARK", "TYPED_MARK", "ArblocksError", "AugmentationConfig",
    "BlockConfig", "BlockError", "Config", "HeadConfig", "ImageSpec", "InputConfig", "ModelSpec", "NodeConfig", "PopRef", "Problem", "RegistryError",
    "SpecError", "SpecWarning", "StageConfig", "StagedSpec", "StreamName", "StreamRef", "StreamRefs", "apply_overrides", "blocks_field",
    "check_size", "did_you_mean", "is_staged", "json_path", "pydantic_problems", "read_spec_file", "stream_field", "typed_field", "visit",
]
