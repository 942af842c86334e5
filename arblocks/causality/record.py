"""The record of a passed check, so that a command need not prove again what a run already proved.

A passed check is recorded with a fingerprint of what it proved: the hash of the canonical spec, the version of
arblocks and of every plugin distribution whose types the spec uses, the check's own version, and the precisions
the value walk ran in. `train` stores it in the checkpoint beside the spec it belongs to (not in a side file such as
run.json); `eval`, `sample` and `train --resume` skip the check when the checkpoint's record matches the fingerprint
they would record now, and say so in one line. Any difference (an upgraded plugin or arblocks, an edited spec, a
precision the record does not cover, a new version of the check) runs the check again. A checkpoint written by
`save_checkpoint` from Python has no record: its model is checked.
"""

from __future__ import annotations

from typing import Any

from ..core.plugins import arblocks_version, get_registry
from ..core.registry import Registry
from ..spec.models import spec_hash

#: the version of what the check proves: raise it when the check learns to catch more (a record of an older check
#: is then not trusted). 2: the value walk runs in float32 too (and bf16/fp16 when asked).
CHECK_VERSION = 2


def used_types(data: Any) -> set[str]:
    """Every ``type`` named anywhere in a spec's JSON (blocks, head, inputs, ordering, patterns, views, transformations)."""
    found: set[str] = set()
    if isinstance(data, dict):
        if isinstance(data.get("type"), str):
            found.add(data["type"])
        for value in data.values():
            found |= used_types(value)
    elif isinstance(data, list):
        for value in data:
            found |= used_types(value)
    return found


def fingerprint(spec, precisions: tuple[str, ...], registry: Registry | None = None) -> dict:
    """What a check of ``spec`` in ``precisions`` (besides float64) proves, and with which code."""
    registry = registry or get_registry()
    dump = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    names = used_types(dump) | ({dump["ordering"]} if isinstance(dump.get("ordering"), str) else set())
    versions = {p.distribution: p.version for p in registry.plugins}
    plugins = {entry.distribution: versions.get(entry.distribution) for table in registry.entries.values() for name, entry in table.items()
               if name in names and entry.distribution != "arblocks"}
    return {"check_version": CHECK_VERSION, "spec_hash": spec_hash(spec), "arblocks": arblocks_version(), "plugins": dict(sorted(plugins.items())),
            "precisions": sorted({"float64", *precisions})}


def covers(record: Any, wanted: dict) -> bool:
    """Whether a checkpoint's record proves what a check would prove now: the same code and spec, and at least
    the precisions wanted."""
    if not isinstance(record, dict) or not record.get("passed"):
        return False
    same = all(record.get(key) == wanted[key] for key in ("check_version", "spec_hash", "arblocks", "plugins"))
    return same and set(wanted["precisions"]) <= set(record.get("precisions") or ())


def describe(record: dict) -> str:
    plugins = ", ".join(f"{d} {v}" for d, v in record.get("plugins", {}).items())
    return (f"causality: proven when the run started (arblocks {record.get('arblocks')}{', ' + plugins if plugins else ''}; "
            f"value walk in {', '.join(record.get('precisions', []))}); the spec and that code are unchanged, so it is not re-checked "
            "(--recheck to run it again)")
