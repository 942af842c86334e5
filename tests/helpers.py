"""Small helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from arblocks import build_model, parse_spec
from arblocks.registry import Registry


def spec_dict(body: list[dict], head: dict | None = None, channels: int = 3, size: int = 6, bits: int = 8, **extra: Any) -> dict:
    return {
        "name": "test",
        "image": {"channels": channels, "height": size, "width": size, "bits": bits},
        "body": body,
        "head": head or {"type": "categorical"},
        **extra,
    }


def build(body: list[dict], registry: Registry | None = None, static_causality: bool = True, **kwargs):
    spec = parse_spec(spec_dict(body, **kwargs), registry=registry)
    return build_model(spec, registry=registry, static_causality=static_causality)


def problems_of(excinfo) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in excinfo.value.problems]
