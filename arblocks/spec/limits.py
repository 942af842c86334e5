"""Limits on a spec's size, checked on the decoded JSON before anything is validated or built.

A spec may nest at most :data:`MAX_DEPTH` levels of JSON objects and arrays, and describe at most
:data:`MAX_LAYERS` blocks once every ``repeat`` is unrolled (``ARBLOCKS_MAX_LAYERS`` raises the limit). Both are
counted in one pass over the JSON (recursing no deeper than MAX_DEPTH), so that a spec of a billion layers (three nested repeats
of 1000) is refused at once instead of building until memory runs out.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import Problem, SpecError, json_path

#: deepest nesting of JSON objects and arrays (the shipped specs use at most 12)
MAX_DEPTH = 64
#: blocks after unrolling every repeat, unless ARBLOCKS_MAX_LAYERS says otherwise (the largest shipped spec has a few hundred)
MAX_LAYERS = 100_000


#: trainable parameters, checked block by block while building, unless ARBLOCKS_MAX_PARAMETERS says otherwise
MAX_PARAMETERS = 2_000_000_000


def max_layers() -> int:
    value = os.environ.get("ARBLOCKS_MAX_LAYERS", "")
    return int(value) if value.isdigit() else MAX_LAYERS


def max_parameters() -> int:
    value = os.environ.get("ARBLOCKS_MAX_PARAMETERS", "")
    return int(value) if value.isdigit() else MAX_PARAMETERS


class _TooDeep(Exception):
    """Raised past MAX_DEPTH; each level on the way out adds its key to ``path``."""

    def __init__(self):
        self.path: list = []


def measure(value: Any, depth: int = 0) -> int:
    """Blocks described by decoded JSON once every ``repeat`` is unrolled: a repeat counts ``times`` its body, any other
    object with a ``type`` 1 plus what it holds (a residual's body). Raises :class:`_TooDeep` past MAX_DEPTH; one visit
    per JSON value, with a recursion no deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _TooDeep()
    items = enumerate(value) if isinstance(value, list) else value.items()
    inner = 0
    for key, item in items:
        if isinstance(item, (dict, list)):
            try:
                inner += measure(item, depth + 1)
            except _TooDeep as error:
                error.path.insert(0, key)
                raise
    if isinstance(value, list) or "type" not in value:
        return inner
    times = value.get("times") if value["type"] == "repeat" else None
    return inner * times if isinstance(times, int) and times > 0 else inner + 1


def check_size(data: Any, source: str | None = None) -> None:
    """Refuse a spec nested too deep or describing more than the allowed number of blocks."""
    layers = 0
    for key, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, (dict, list)):
            try:
                count = measure(value, 1)
            except _TooDeep as error:
                where = (key, *error.path)
                shown = json_path(where[:8]) + ("/..." if len(where) > 8 else "")
                message = f"the spec nests more than {MAX_DEPTH} levels of objects and arrays; flatten it (a `repeat` replaces nesting)"
                raise SpecError([Problem(shown, "too_deep", message)], source) from None
            layers += count if key == "body" else 0
    limit = max_layers()
    if layers > limit:
        raise SpecError([Problem("/body", "too_large", (
            f"the body describes {layers:,} blocks once its repeats are unrolled, more than the limit of {limit:,}; "
            "lower the repeat counts, or raise the limit with ARBLOCKS_MAX_LAYERS if you mean it"))], source)
