"""Editing decoded specs programmatically (sweeps, narrowed copies for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import Problem, SpecError


def visit(node: Any, fn: Callable[[dict], None]) -> Any:
    """Call ``fn`` on every JSON object inside ``node`` (a decoded spec or part of one), outermost first; returns ``node``.

    ``fn`` edits objects in place, e.g. ``visit(spec["body"], lambda b: b.update(channels=32) if "channels" in b else None)``.
    """
    if isinstance(node, dict):
        fn(node)
        for value in list(node.values()):
            visit(value, fn)
    elif isinstance(node, list):
        for value in node:
            visit(value, fn)
    return node


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A copy of a decoded spec with ``PATH=VALUE`` overrides applied (``--set``). PATH is dotted (``image.height``,
    ``defaults.gated_resnet.dropout``, ``body.3.channels``: numbers index lists); VALUE is JSON (``16``, ``0.1``,
    ``true``, ``"name"``, ``[2, 3]``), or a plain string. Missing objects on the way are created; a problem is a
    :class:`~arblocks.spec.errors.SpecError` with the override's JSON path. The result is validated like any spec."""
    import copy
    import json

    data = copy.deepcopy(data)
    problems = []
    for override in overrides:
        path, sep, raw = override.partition("=")
        keys = [k for k in path.strip().split(".") if k]
        pointer = "/" + "/".join(keys)
        if not sep or not keys:
            problems.append(Problem(pointer if keys else "/", "override", f"--set expects PATH=VALUE (e.g. image.height=16), got {override!r}"))
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
                    problems.append(Problem(pointer, "override", f"'{key}' is not an index of the list at /{'/'.join(keys[:i])} ({len(node)} items)"))
                    break
                key = int(key)
            elif not isinstance(node, dict):
                problems.append(Problem(pointer, "override", f"/{'/'.join(keys[:i])} is a {type(node).__name__}, not an object or a list"))
                break
            if last:
                node[key] = value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    if problems:
        raise SpecError(problems, "--set")
    return data
