"""Every registered config is typed, closed, documented and bounded, as the block contract asks."""

import typing

import pytest

from arblocks import get_registry

ENTRIES = get_registry().find()


def numeric(annotation) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.kind}:{e.name}")
def test_config_is_closed_documented_and_bounded(entry):
    config = entry.config
    assert config.model_config.get("extra") == "forbid"
    assert entry.description, "the config's docstring gives the one-line description"
    for name, field in config.model_fields.items():
        if name == "type":
            continue
        assert field.description, f"{entry.name}.{name} has no description"
        if numeric(field.annotation):
            bounds = [m for m in field.metadata if type(m).__name__ in {"Gt", "Ge", "Lt", "Le", "Interval"}]
            assert bounds, f"{entry.name}.{name} is a number without bounds"
