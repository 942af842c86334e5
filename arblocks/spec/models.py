"""Pydantic models of a spec.

A spec file is validated in two stages (see :mod:`arblocks.core.validate`): the top level against
:class:`ModelSpec`, then every block, input and head against the config class registered for its
``type``. Config classes of blocks derive from :class:`BlockConfig`; containers (``repeat``,
``residual``) hold nested block lists declared with :func:`blocks_field`.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationInfo, field_validator

STREAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IMAGE_STREAM = "x"

StreamName = Annotated[str, StringConstraints(pattern=STREAM_NAME_PATTERN)]


class PopRef(BaseModel):
    """Read a stream by popping the most recent entry of a skip stack (see ``push``)."""

    model_config = ConfigDict(extra="forbid")
    pop: StreamName = Field(description="Name of the skip stack to pop from.")


StreamRef = StreamName | PopRef
StreamRefs = StreamRef | list[StreamRef]

# Markers that the validator and the builder look for in a field's json_schema_extra.
STREAM_MARK = "x-arblocks-stream"
BLOCKS_MARK = "x-arblocks-blocks"
TYPED_MARK = "x-arblocks-kind"  # a field holding registered objects of another kind (e.g. attention patterns)


def stream_field(description: str, **kwargs: Any) -> Any:
    """A config field naming an auxiliary input stream (a name, ``{"pop": stack}``, or a list concatenated on channels)."""
    return Field(None, description=description, json_schema_extra={STREAM_MARK: True}, **kwargs)


def blocks_field(description: str, **kwargs: Any) -> Any:
    """A config field holding a nested list of blocks (validated recursively against the registry)."""
    return Field(
        description=description,
        json_schema_extra={BLOCKS_MARK: True},
        **kwargs,
    )


def typed_field(kind: str, description: str, default: Any = None, **kwargs: Any) -> Any:
    """A config field holding a ``{"type": ...}`` object of a registered ``kind`` (or a list of them),
    validated against the registry like blocks are."""
    return Field(default, description=description, json_schema_extra={TYPED_MARK: kind}, **kwargs)


def numbers_only(annotation: Any) -> bool:
    """Whether a field's type admits numbers (or booleans) and no strings: ``int``, ``float | None``, ``tuple[int, int]``'s
    members are not looked into (a string there is refused by the tuple's own validation)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    members = [m for m in members if m is not type(None)]
    return bool(members) and all(isinstance(m, type) and issubclass(m, int | float) for m in members)


class Config(BaseModel):
    """Base of every registered config: unknown fields are errors, and so is a number written as a string
    (``"factor": "2"``), which pydantic would otherwise read as the number."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_strings(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and info.field_name in cls.model_fields and numbers_only(cls.model_fields[info.field_name].annotation):
            kind = "true or false" if cls.model_fields[info.field_name].annotation is bool else "a number"
            raise ValueError(f"must be {kind}, not the string {json.dumps(value)} (write it without quotes)")
        return value


class NodeConfig(Config):
    """Anything that can stand in a ``body`` list."""

    type: str
    name: str | None = Field(None, description="Label shown by `arblocks build`; defaults to the JSON path.")


class BlockConfig(NodeConfig):
    """Base of block configs: which streams a block reads and writes."""

    in_: StreamRefs | None = Field(
        None,
        alias="in",
        description="Input stream(s): a name, {\"pop\": stack}, or a list of them for blocks with several inputs. "
        "Defaults to the stream written last (the image `x` at the start).",
    )
    out: StreamName | None = Field(
        None,
        description="Stream to write. Defaults to the first input stream, or `h` when that is the image or a spec input.",
    )
    push: StreamName | None = Field(None, description="Also push the output onto this skip stack (read it later with {\"pop\": name}).")


class HeadConfig(Config):
    """Base of head configs."""

    type: str
    in_: StreamName | None = Field(None, alias="in", description="Feature stream the head reads; defaults to the stream written last.")


class InputConfig(Config):
    """Base of extra-input configs (class labels, positional maps, conditioning maps)."""

    type: str


class ImageSpec(Config):
    """The modelled image."""

    channels: int = Field(gt=0, le=64, description="Number of channels (sub-pixels) per pixel.")
    height: int = Field(gt=0, le=4096, description="Image height in pixels.")
    width: int = Field(gt=0, le=4096, description="Image width in pixels.")
    bits: int = Field(8, ge=1, le=16, description="Bit depth: each sub-pixel takes 2**bits levels.")

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def dims(self) -> int:
        return self.channels * self.height * self.width


class AugmentationConfig(Config):
    """Distribution Augmentation: training draws a transformation choice per image per step, applies it, and tells the
    model which through a label input; evaluation and sampling use the identity unless told otherwise."""

    transformations: list[Any] = Field(
        min_length=1, description="The transformations, each {\"type\": ..., \"probability\": ...} of a registered transformation type, applied in this order."
    )
    conditioning: StreamName | None = Field(
        "augmentation",
        description="The input stream that carries the choices, one index per transformation into one joint table: blocks read it like a "
        "class label (`label` of gated_resnet, gate, embedding, token_embedding). null: augmentation without conditioning (the paper's ablation).",
    )


class ModelSpec(Config):
    """A whole model: the image, extra inputs, the body of blocks and the output head."""

    schema_: str | None = Field(None, alias="$schema", description="Optional JSON Schema reference for editors.")
    name: str = Field(min_length=1, description="Model name.")
    description: str = Field("", description="Free text.")
    image: ImageSpec
    ordering: Any = Field("raster", description="Generation order of the pixels: a registered ordering's name, or {\"type\": ..., \"transpose\": ..., ...}.")
    inputs: dict[StreamName, Any] = Field(
        default_factory=dict, description="Extra inputs by stream name, each {\"type\": ..., ...} of a registered input type."
    )
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Default field values by block type, for every block of that type that does not set the field: "
        "{\"gated_resnet\": {\"dropout\": 0.5}}.",
    )
    body: list[Any] = blocks_field("The blocks, run in order.", min_length=1)
    head: Any = Field(description="The output head: {\"type\": ..., ...} of a registered head type.")
    augmentation: AugmentationConfig | None = Field(None, description="Distribution Augmentation: transformations of the training images and the input that tells the model which.")


class StageConfig(Config):
    """One stage: a view of the image and the model of it."""

    name: StreamName = Field(description="The stage's variable: later stages read it as an input stream of this name.")
    view: Any = Field("identity", description="What the stage models: a registered view's name, or {\"type\": ..., ...}; the last stage's is `identity`.")
    ordering: Any = Field("raster", description="Generation order of the view's pixels, as for a single model.")
    inputs: dict[StreamName, Any] = Field(default_factory=dict, description="Extra inputs of this stage only, as for a single model.")
    body: list[Any] = blocks_field("The stage's blocks, run in order.", min_length=1)
    head: Any = Field(description="The stage's output head.")


class StagedSpec(Config):
    """A model of several stages, each modelling a view of the image given the earlier stages' views."""

    schema_: str | None = Field(None, alias="$schema", description="Optional JSON Schema reference for editors.")
    name: str = Field(min_length=1, description="Model name.")
    description: str = Field("", description="Free text.")
    image: ImageSpec
    inputs: dict[StreamName, Any] = Field(default_factory=dict, description="Extra inputs every stage reads (class labels, ...).")
    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Default field values by block type, for every stage.")
    stages: list[StageConfig] = Field(min_length=1, description="The stages, in the order they are modelled and sampled.")
    _compiled: list = PrivateAttr(default_factory=list)
    _views: list = PrivateAttr(default_factory=list)

    @property
    def stage_specs(self) -> list:
        """Each stage as an ordinary :class:`arblocks.ModelSpec` (set by :func:`arblocks.staged.parse_staged`)."""
        return self._compiled

    @property
    def views(self) -> list:
        """Each stage's view, a :class:`arblocks.staged.View` (set by :func:`arblocks.staged.parse_staged`)."""
        return self._views


def is_staged(data: Any) -> bool:
    return isinstance(data, dict) and "stages" in data


def spec_json(spec: BaseModel) -> str:
    """The canonical JSON of a spec (or a spec with stages): sorted keys, aliases, no null fields; what a checkpoint
    stores and what its hash is taken of."""
    return json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True)


def spec_hash(spec: BaseModel) -> str:
    """SHA-256 of :func:`spec_json`: a checkpoint's ``spec_hash``, and the spec a passed check's record names."""
    return hashlib.sha256(spec_json(spec).encode()).hexdigest()
