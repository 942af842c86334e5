"""JSON Schema of a spec, with every registered block, head, input type, ordering and view (plugins' too)."""

from __future__ import annotations

from typing import Any

from ..spec.models import BLOCKS_MARK, STREAM_MARK, TYPED_MARK, ModelSpec, StagedSpec
from .plugins import get_registry
from .registry import Registry

KIND_DEFS = {"block": "Block", "head": "Head", "input": "Input", "ordering": "Ordering", "attention": "AttentionPattern", "view": "View",
             "transformation": "Transformation"}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _merge_defs(target: dict, schema: dict) -> dict:
    for name, definition in schema.pop("$defs", {}).items():
        target.setdefault(name, definition)
    return schema


def _union(registry: Registry, kind: str, defs: dict) -> dict:
    """Every registered type of a kind, chosen by ``type``: an ``if``/``then`` per type (so that a validator reports
    the error inside the chosen type's config, e.g. an unknown field, not "valid under none of the schemas"), the type
    names as an enum, and the OpenAPI-style ``discriminator`` mapping that editors read."""
    branches, mapping = [], {}
    for name, entry in sorted(registry.entries[kind].items()):
        key = f"{kind}.{name}"
        defs[key] = _merge_defs(defs, entry.config.model_json_schema(ref_template="#/$defs/{model}"))
        defs[key]["x-plugin"] = entry.distribution
        branches.append({"if": {"properties": {"type": {"const": name}}, "required": ["type"]}, "then": {"$ref": f"#/$defs/{key}"}})
        mapping[name] = f"#/$defs/{key}"
    return {"type": "object", "required": ["type"], "properties": {"type": {"enum": sorted(mapping)}}, "allOf": branches,
            "discriminator": {"propertyName": "type", "mapping": mapping}}


def _typed_properties(props: dict, registry: Registry) -> None:
    """The head, inputs and ordering of a model (or of a stage) as references to their registered unions."""
    props["head"] = {"$ref": "#/$defs/Head", "description": props["head"].get("description", "")}
    props["inputs"]["patternProperties"] = {pattern: {"$ref": "#/$defs/Input"} for pattern in props["inputs"].get("patternProperties", {})}
    props["inputs"]["additionalProperties"] = False
    props["ordering"] = {
        "description": props["ordering"].get("description", ""),
        "default": "raster",
        "anyOf": [{"type": "string", "enum": sorted(registry.orderings)}, {"$ref": "#/$defs/Ordering"}],
    }


def spec_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """A single model, or a model of several stages (each stage's view, body, head, inputs and ordering validated)."""
    registry = registry or get_registry()
    defs: dict[str, Any] = {}
    model = _merge_defs(defs, ModelSpec.model_json_schema(ref_template="#/$defs/{model}"))
    staged = _merge_defs(defs, StagedSpec.model_json_schema(ref_template="#/$defs/{model}"))
    for kind, name in KIND_DEFS.items():
        defs[name] = _union(registry, kind, defs)
    _typed_properties(model["properties"], registry)
    stage = defs["StageConfig"]["properties"]
    _typed_properties(stage, registry)
    stage["view"] = {"description": stage["view"].get("description", ""), "default": "identity",
                     "anyOf": [{"type": "string", "enum": sorted(registry.views)}, {"$ref": "#/$defs/View"}]}
    staged["properties"]["inputs"]["patternProperties"] = {p: {"$ref": "#/$defs/Input"} for p in staged["properties"]["inputs"].get("patternProperties", {})}
    staged["properties"]["inputs"]["additionalProperties"] = False
    defs["AugmentationConfig"]["properties"]["transformations"]["items"] = {"$ref": "#/$defs/Transformation"}
    defs["Model"], defs["StagedModel"] = model, staged
    for definition in defs.values():  # nested block lists refer to the union; internal markers go
        for prop in definition.get("properties", {}).values():
            if prop.pop(BLOCKS_MARK, None):
                prop["items"] = {"$ref": "#/$defs/Block"}
            kind = prop.pop(TYPED_MARK, None)
            if kind:
                one = {"$ref": f"#/$defs/{KIND_DEFS[kind]}"}
                prop.pop("anyOf", None)
                prop["anyOf"] = [one, {"type": "array", "items": one, "minItems": 1}, {"type": "null"}]
            prop.pop(STREAM_MARK, None)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "arblocks model spec",
        "description": "A model (body and head), or a model of several stages (stages), each of which models a view of the image.",
        "oneOf": [{"$ref": "#/$defs/Model"}, {"$ref": "#/$defs/StagedModel"}],
        "$defs": defs,
    }
