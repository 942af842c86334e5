"""Editing decoded specs programmatically (sweeps, narrowed copies for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
