"""Reading a spec file, and pydantic's errors as problems with JSON paths and helpful messages."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Problem, SpecError, did_you_mean, json_path
from .limits import MAX_DEPTH


def read_spec_file(path: str | Path) -> Any:
    """Parse a JSON file; malformed JSON becomes a SpecError with the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("", "file_not_found", f"no such file: {path}")], source=str(path)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([Problem("", "unreadable", f"cannot read the file: {error}")], source=str(path)) from None
    try:
        duplicates: list[tuple[str, dict]] = []
        data = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, duplicates))
        if duplicates:
            raise SpecError([Problem(json_path((_path_of(data, obj) or ()) + (key,)), "duplicate_key",
                                     f"the key '{key}' appears twice in this object (JSON would keep the last silently); keep one")
                             for key, obj in duplicates], source=str(path))
        return data
    except json.JSONDecodeError as error:
        message = f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        raise SpecError([Problem("", "json_invalid", message)], source=str(path)) from None
    except RecursionError:
        message = f"the JSON nests too deep to read; a spec may nest at most {MAX_DEPTH} levels of objects and arrays"
        raise SpecError([Problem("", "too_deep", message)], source=str(path)) from None
    except MemoryError:
        raise SpecError([Problem("", "too_large", f"the file ({len(text):,} characters) is too large to read")], source=str(path)) from None


def _object(pairs: list[tuple[str, Any]], duplicates: list) -> dict:
    """A JSON object, noting the keys it has twice."""
    result: dict = {}
    for key, value in pairs:
        if key in result:
            duplicates.append((key, result))
        result[key] = value
    return result


def _path_of(data: Any, target: dict, path: tuple = ()) -> tuple:
    """The path of the object ``target`` (by identity) inside ``data``."""
    if data is target:
        return path
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, child in children:
        found = _path_of(child, target, (*path, key))
        if found is not None:
            return found
    return None


def field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def pydantic_problems(error: ValidationError, prefix: tuple, model: type[BaseModel], what: str) -> list[Problem]:
    """Translate pydantic errors into problems with JSON paths and helpful messages."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        kind = item["type"]
        path = json_path((*prefix, *loc))
        problems.append(Problem(path, kind, _message(item, model, what)))
    return problems


def _message(item: dict, model: type[BaseModel], what: str) -> str:
    kind, ctx, value = item["type"], item.get("ctx", {}), item.get("input")
    field = item["loc"][-1] if item["loc"] else ""
    if kind == "extra_forbidden":
        owner = _owner_model(model, item["loc"])
        return f"unknown field for '{what}'{did_you_mean(str(field), field_names(owner))}"
    if kind == "missing":
        return "required field is missing"
    comparisons = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"), "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}
    if kind in comparisons:
        sign, key = comparisons[kind]
        return f"must be {sign} {ctx[key]} (got {json.dumps(value)})"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']} (got {json.dumps(value)})"
    if kind == "value_error":
        return str(ctx.get("error", item["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{json.dumps(value)} is not a valid name (letters, digits and _, not starting with a digit)"
    return f"{item['msg'][0].lower()}{item['msg'][1:]} (got {json.dumps(value, default=str)[:60]})"


def _owner_model(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The pydantic model that holds the field at ``loc`` (for did-you-mean on nested models like `image`)."""
    current = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        # a nested model, or a list or dict of them (a spec's `stages`)
        for candidate in (annotation, *typing.get_args(annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
    return current
