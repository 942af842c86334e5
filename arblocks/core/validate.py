"""Reading and validating spec files, with every problem reported by JSON path.

Stage 1 validates the top level against :class:`~arblocks.spec.ModelSpec`; stage 2 dispatches every
block, input and head on its ``type`` to the config class registered for it, recursing into nested
block lists. All problems are collected and raised together as one :class:`~arblocks.spec.errors.SpecError`.
Nothing in a spec is imported or executed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..spec.errors import Problem, SpecError, did_you_mean, json_path
from ..spec.limits import check_size
from ..spec.models import BLOCKS_MARK, TYPED_MARK, ModelSpec
from ..spec.reading import field_names, pydantic_problems, read_spec_file
from .plugins import get_registry
from .registry import Registry

KIND_WORDS = {"block": "block", "head": "head", "input": "input", "ordering": "ordering", "attention": "attention pattern", "view": "view",
              "transformation": "transformation"}
LIST_COMMANDS = {
    "block": "`arblocks blocks`",
    "head": "`arblocks blocks --kind head`",
    "input": "`arblocks blocks --kind input`",
    "ordering": "`arblocks blocks --kind ordering`",
    "view": "`arblocks blocks --kind view`",
    "transformation": "`arblocks blocks --kind transformation`",
    "attention": "`arblocks blocks --kind attention`",
}


def load_spec(path: str | Path, registry: Registry | None = None) -> ModelSpec:
    return parse_spec(read_spec_file(path), registry=registry, source=str(path))


def parse_spec(data: Any, registry: Registry | None = None, source: str | None = None) -> ModelSpec:
    """Validate a decoded spec; raises SpecError listing every problem."""
    registry = registry or get_registry()
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise SpecError([Problem("", "type_error", f"a spec must be a JSON object, got {type(data).__name__}")], source)
    if "stages" in data:
        raise SpecError([Problem("/stages", "staged", "this spec lists stages: load it with arblocks.load_staged (a StagedModel); "
                                 "see docs/spec-format.md#stages-models-of-several-variables")], source)
    check_size(data, source)
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        problems.extend(pydantic_problems(error, (), ModelSpec, "spec"))
        spec = None
    # Stage 2 runs on the raw data even when stage 1 failed, so that block problems are reported too.
    defaults = validate_defaults(data.get("defaults"), registry, problems)
    body = data.get("body")
    blocks = validate_nodes(body, ("body",), registry, problems, defaults) if isinstance(body, list) else None
    inputs = {}
    if isinstance(data.get("inputs"), dict):
        for name, raw in data["inputs"].items():
            inputs[name] = validate_typed(raw, ("inputs", name), registry, "input", problems)
    head = validate_typed(data["head"], ("head",), registry, "head", problems) if "head" in data else None
    augmentation = None
    raw_augmentation = data.get("augmentation")
    if spec is not None and spec.augmentation is not None:
        typed = [validate_typed(raw, ("augmentation", "transformations", i), registry, "transformation", problems)
                 for i, raw in enumerate(raw_augmentation["transformations"])]
        augmentation = spec.augmentation.model_copy(update={"transformations": typed})
    raw_ordering = data.get("ordering", "raster")
    ordering = validate_typed({"type": raw_ordering} if isinstance(raw_ordering, str) else raw_ordering, ("ordering",), registry, "ordering", problems)
    if problems:
        if spec is not None and blocks is not None and head is not None and ordering is not None and None not in inputs.values():
            partial = spec.model_copy(update={"body": blocks, "inputs": inputs, "head": head, "ordering": ordering, "augmentation": augmentation})
            problems.extend(p for p in build_problems(partial, registry) if p not in problems)  # one round: the wiring's problems too
        raise SpecError(problems, source)
    return spec.model_copy(update={"body": blocks, "inputs": inputs, "head": head, "ordering": ordering, "augmentation": augmentation})


def build_problems(partial: ModelSpec, registry: Registry) -> list[Problem]:
    """The problems the builder finds in a spec whose invalid blocks stand as :class:`InvalidNode` (skipped, their
    output streams unknown), on the meta device (nothing allocated). Only when every invalid node is a top-level leaf
    block: skipping a container could misreport the skip stacks of the blocks after it."""
    from .builder import build_model

    if any(isinstance(node, InvalidNode) and node.container for node in partial.body) or None in partial.body:
        return []
    try:
        build_model(partial, registry, device="meta")
    except SpecError as error:
        return list(error.problems)
    except Exception:  # noqa: BLE001 - a partial spec is best effort: its schema problems are reported anyway
        return []
    return []


class InvalidNode:
    """A body entry that failed validation (its problems are reported): the builder skips it, taking its output
    stream as unknown, and replays its pushes and pops so that later blocks are checked as if it were there."""

    invalid = True

    def __init__(self, raw: dict):
        def names(value) -> list:
            return [value] if isinstance(value, str | dict) else list(value) if isinstance(value, list) else []

        self.out = raw.get("out") if isinstance(raw.get("out"), str) else None
        first = names(raw.get("in"))[:1]
        self.first_input = first[0] if first and isinstance(first[0], str) else None
        self.push = raw.get("push") if isinstance(raw.get("push"), str) else None
        self.pops = [v["pop"] for value in raw.values() for v in names(value) if isinstance(v, dict) and set(v) == {"pop"} and isinstance(v["pop"], str)]
        self.container = any(isinstance(v, list) and any(isinstance(item, dict) and "type" in item for item in v) for v in raw.values())
        self.type = raw.get("type")


def validate_defaults(raw: Any, registry: Registry, problems: list[Problem]) -> dict[str, dict]:
    """The spec's per-type defaults, with unknown types and fields reported at /defaults/..."""
    if not isinstance(raw, dict):
        return {}
    good = {}
    for type_name, fields in raw.items():
        entry = registry.blocks.get(type_name)
        if entry is None:
            problems.append(unknown_type_problem(type_name, ("defaults", type_name), registry, "block"))
            continue
        if not isinstance(fields, dict):
            continue  # stage 1 reports it
        names = field_names(entry.config)
        for field in fields:
            if field not in names or field == "type":
                problems.append(Problem(json_path(("defaults", type_name, field)), "extra_forbidden", f"unknown field for '{type_name}'{did_you_mean(field, names)}"))
        good[type_name] = {k: v for k, v in fields.items() if k in names and k != "type"}
    return good


def validate_nodes(raw_list: list, path: tuple, registry: Registry, problems: list[Problem], defaults: dict | None = None) -> list:
    """The configs of a body; an entry that fails validation (a JSON object) stands as an :class:`InvalidNode`."""
    nodes = []
    for i, raw in enumerate(raw_list):
        node = validate_typed(raw, (*path, i), registry, "block", problems, defaults)
        nodes.append(node if node is not None or not isinstance(raw, dict) else InvalidNode(raw))
    return nodes


def validate_typed(raw: Any, path: tuple, registry: Registry, kind: str, problems: list[Problem], defaults: dict | None = None) -> BaseModel | None:
    """Validate one ``{"type": ..., ...}`` object against the config registered for its type."""
    if not isinstance(raw, dict):
        problems.append(Problem(json_path(path), "type_error", f"a {KIND_WORDS[kind]} must be a JSON object with a 'type', got {json.dumps(raw)[:60]}"))
        return None
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        problems.append(Problem(json_path((*path, "type")), "missing", f"every {KIND_WORDS[kind]} needs a 'type' (a string)"))
        return None
    entry = registry.entries[kind].get(type_name)
    if entry is None:
        problems.append(unknown_type_problem(type_name, (*path, "type"), registry, kind))
        return None
    if defaults and type_name in defaults:
        raw = {**defaults[type_name], **raw}
    before = len(problems)
    nested = {}
    for field_name, field in entry.config.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        key = field.alias or field_name
        if extra.get(BLOCKS_MARK) and isinstance(raw.get(key), list):
            nested[field_name] = validate_nodes(raw[key], (*path, key), registry, problems, defaults)
        elif extra.get(TYPED_MARK) and raw.get(key) is not None:
            nested[field_name] = validate_typed_field(raw[key], (*path, key), registry, extra[TYPED_MARK], problems)
    try:
        config = entry.config.model_validate(raw)
    except ValidationError as error:
        problems.extend(pydantic_problems(error, path, entry.config, type_name))
        return None
    if len(problems) > before:
        return None
    return config.model_copy(update=nested) if nested else config


def validate_typed_field(value: Any, path: tuple, registry: Registry, kind: str, problems: list[Problem]) -> Any:
    """A field holding one registered object of ``kind`` or a list of them."""
    if isinstance(value, list):
        if not value:
            problems.append(Problem(json_path(path), "too_short", f"give at least one {KIND_WORDS[kind]}"))
        return [validate_typed(item, (*path, i), registry, kind, problems) for i, item in enumerate(value)]
    return validate_typed(value, path, registry, kind, problems)


def unknown_type_problem(type_name: str, path: tuple, registry: Registry, kind: str) -> Problem:
    known = registry.entries[kind]
    message = f"unknown {KIND_WORDS[kind]} type '{type_name}'{did_you_mean(type_name, known)}"
    message += f" ({LIST_COMMANDS[kind]} lists all {len(known)})"
    broken = [p for p in registry.failed if p.error and "disabled" not in p.error]
    if broken:
        names = "; ".join(f"plugin '{p.name}' ({p.distribution}) failed to load: {p.error}" for p in broken)
        message += f"; it may come from a plugin that did not load: {names}"
    disabled = [p.name for p in registry.failed if p.error and "disabled" in p.error]
    if disabled:
        message += f"; disabled plugins: {', '.join(disabled)}"
    return Problem(json_path(path), "unknown_type", message)


