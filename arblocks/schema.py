"""JSON Schema of a spec, with every registered block, head, input type and ordering (plugins' too)."""

from __future__ import annotations

from typing import Any

from .plugins import get_registry
from .registry import Registry
from .spec import BLOCKS_MARK, STREAM_MARK, TYPED_MARK, ModelSpec

KIND_DEFS = {"block": "Block", "head": "Head", "input": "Input", "ordering": "Ordering", "attention": "AttentionPattern"}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _merge_defs(target: dict, schema: dict) -> dict:
    for name, definition in schema.pop("$defs", {}).items():
        target.setdefault(name, definition)
    return schema


def _union(registry: Registry, kind: str, defs: dict) -> dict:
    refs, mapping = [], {}
    for name, entry in sorted(registry.entries[kind].items()):
        key = f"{kind}.{name}"
        defs[key] = _merge_defs(defs, entry.config.model_json_schema(ref_template="#/$defs/{model}"))
        defs[key]["x-plugin"] = entry.distribution
        refs.append({"$ref": f"#/$defs/{key}"})
        mapping[name] = f"#/$defs/{key}"
    return {"oneOf": refs, "discriminator": {"propertyName": "type", "mapping": mapping}}


def spec_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or get_registry()
    defs: dict[str, Any] = {}
    schema = _merge_defs(defs, ModelSpec.model_json_schema(ref_template="#/$defs/{model}"))
    defs["Block"] = _union(registry, "block", defs)
    defs["Head"] = _union(registry, "head", defs)
    defs["Input"] = _union(registry, "input", defs)
    props = schema["properties"]
    props["head"] = {"$ref": "#/$defs/Head", "description": props["head"].get("description", "")}
    props["inputs"]["patternProperties"] = {pattern: {"$ref": "#/$defs/Input"} for pattern in props["inputs"].get("patternProperties", {})}
    props["inputs"]["additionalProperties"] = False
    defs["Ordering"] = _union(registry, "ordering", defs)
    props["ordering"] = {
        "description": props["ordering"].get("description", ""),
        "default": "raster",
        "anyOf": [{"type": "string", "enum": sorted(registry.orderings)}, {"$ref": "#/$defs/Ordering"}],
    }
    defs["AttentionPattern"] = _union(registry, "attention", defs)
    for definition in [schema, *defs.values()]:  # nested block lists refer to the union; internal markers go
        for prop in definition.get("properties", {}).values():
            if prop.pop(BLOCKS_MARK, None):
                prop["items"] = {"$ref": "#/$defs/Block"}
            kind = prop.pop(TYPED_MARK, None)
            if kind:
                one = {"$ref": f"#/$defs/{KIND_DEFS[kind]}"}
                prop.pop("anyOf", None)
                prop["anyOf"] = [one, {"type": "array", "items": one, "minItems": 1}, {"type": "null"}]
            prop.pop(STREAM_MARK, None)
    schema["$defs"] = defs
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = "arblocks model spec"
    return schema
