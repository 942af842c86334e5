"""The block catalogue in Markdown, generated from the registered config classes (docs/blocks.md)."""

from __future__ import annotations

import json

from ..spec.models import BlockConfig
from .block import Block
from .plugins import get_registry
from .registry import KINDS, Registry

TITLES = {"block": "Blocks", "head": "Heads", "input": "Input types", "ordering": "Orderings", "attention": "Attention patterns", "dataset": "Data sources",
          "view": "Views (the deterministic views that a model of several stages models first)",
          "transformation": "Transformations (the bijections of the image that Distribution Augmentation trains on)",
          "importer": "Weight importers (`arblocks import FORMAT SOURCE --spec SPEC`: an original implementation's released weights into a spec)"}
HIDDEN = {"type"}
COMMON = ("name", "in", "out", "push")  # BlockConfig's own fields, described once


def _type_of(schema: dict) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_of(s) for s in schema["anyOf"] if s.get("type") != "null")
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if schema.get("type") == "array":
        return "list of blocks" if schema.get("x-arblocks-blocks") else f"list[{_type_of(schema.get('items', {}))}]"
    return schema.get("type", "any")


def _bounds(schema: dict) -> str:
    parts = []
    for key, sign in (("exclusiveMinimum", ">"), ("minimum", ">="), ("exclusiveMaximum", "<"), ("maximum", "<=")):
        for s in [schema, *schema.get("anyOf", [])]:
            if key in s:
                parts.append(f"{sign} {s[key]}")
    return ", ".join(parts)


def sampling_kind(cls) -> str:
    """How the cached sampler computes a block type (see arblocks.core.incremental)."""
    if getattr(cls, "forward_at", Block.forward_at) is not Block.forward_at:
        return "an incremental step (`forward_at`)"
    if getattr(cls, "reach", Block.reach) is not Block.reach:
        return "local, a window of its forward (`reach`)"
    return "recomputed over the whole map at each draw (no incremental step)"


def render_catalogue(registry: Registry | None = None) -> str:
    registry = registry or get_registry()
    out = [
        "# Block catalogue",
        "",
        "Generated from the built-in config classes by `arblocks blocks --markdown --no-plugins`; do not edit by hand",
        "(a test checks that this file matches the code). Fields marked *stream* name streams (see spec-format.md).",
        "",
    ]
    common = BlockConfig.model_json_schema()["properties"]
    out += ["## Fields every block has", "", "| field | type | description |", "|---|---|---|"]
    out += [f"| `{name}` | {_type_of(common[name])} | {common[name]['description']} |" for name in COMMON]
    out.append("")
    for kind in KINDS:
        out += [f"## {TITLES[kind]}", ""]
        for entry in registry.find(kinds=(kind,)):
            schema = entry.config.model_json_schema()
            out += [f"### `{entry.name}`", "", entry.description, "", f"Provided by `{entry.distribution}` (plugin `{entry.plugin}`).", ""]
            rest = (entry.config.__doc__ or "").strip().splitlines()[1:]
            if any(line.strip() for line in rest):
                out += [" ".join(line.strip() for line in rest if line.strip()), ""]
            if kind == "block" and not getattr(entry.cls, "structural", False):
                out += [f"Cached sampling: {sampling_kind(entry.cls)}.", ""]
            hidden = HIDDEN | (set(COMMON) if issubclass(entry.config, BlockConfig) else set())
            fields = {k: v for k, v in schema.get("properties", {}).items() if k not in hidden}
            if fields:
                out += ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
                required = set(schema.get("required", []))
                for name, prop in fields.items():
                    default = "*required*" if name in required else f"`{json.dumps(prop.get('default'))}`"
                    kind_text = _type_of(prop) + (" *stream*" if prop.get("x-arblocks-stream") else "")
                    description = prop.get("description", "").replace("|", "\\|")
                    out.append(f"| `{name}` | {kind_text} | {default} | {_bounds(prop)} | {description} |")
                out.append("")
    return "\n".join(out).rstrip() + "\n"
