"""The registry: every block, head, input type and ordering, with the plugin that provides it.

Built with :func:`load_registry` from a pluggy plugin manager (see :mod:`arblocks.core.plugins`).
:func:`get_registry` caches the default one; tests build fresh ones.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, get_args

from ..spec.errors import RegistryError

KINDS = ("block", "head", "input", "ordering", "attention", "dataset", "view", "transformation", "importer")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str

    @property
    def description(self) -> str:
        return first_line(self.cls.Config.__doc__ or self.cls.__doc__ or "")

    @property
    def config(self) -> type:
        return self.cls.Config


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str | None = None
    error: str | None = None


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugins: list[PluginInfo] = field(default_factory=list)

    @property
    def blocks(self) -> dict[str, Entry]:
        return self.entries["block"]

    @property
    def heads(self) -> dict[str, Entry]:
        return self.entries["head"]

    @property
    def inputs(self) -> dict[str, Entry]:
        return self.entries["input"]

    @property
    def orderings(self) -> dict[str, Entry]:
        return self.entries["ordering"]

    @property
    def attention_patterns(self) -> dict[str, Entry]:
        return self.entries["attention"]

    @property
    def views(self) -> dict[str, Entry]:
        return self.entries["view"]

    @property
    def transformations(self) -> dict[str, Entry]:
        return self.entries["transformation"]

    @property
    def importers(self) -> dict[str, Entry]:
        return self.entries["importer"]

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]

    def add(self, kind: str, cls: type, plugin: str, distribution: str) -> None:
        base = base_class(kind)
        structural = kind == "block" and getattr(cls, "structural", False)  # `repeat`: unrolled by the builder, no module
        if not isinstance(cls, type) or not (structural or issubclass(cls, base)):
            raise RegistryError(f"plugin '{plugin}' ({distribution}) registers {cls!r} as a {kind} type, but it is not a subclass of {base.__module__}.{base.__name__}")
        try:
            name = type_name(cls)
        except RegistryError as error:
            raise RegistryError(f"plugin '{plugin}' ({distribution}): {error}") from None
        table = self.entries[kind]
        if name in table:
            first = table[name]
            if first.plugin == plugin:
                what = "the same class twice" if first.cls is cls else f"two classes ({first.cls.__name__} and {cls.__name__})"
                raise RegistryError(f"plugin '{plugin}' ({distribution}) registers {what} as {kind} type '{name}'; call register once per type")
            raise RegistryError(
                f"{kind} type '{name}' is provided by two plugins: '{first.plugin}' ({first.distribution}) "
                f"and '{plugin}' ({distribution}); uninstall or disable one (ARBLOCKS_DISABLE_PLUGINS=name)"
            )
        table[name] = Entry(kind, name, cls, plugin, distribution)

    def find(self, pattern: str | None = None, kinds: tuple[str, ...] = KINDS) -> list[Entry]:
        out = []
        for kind in kinds:
            for name, entry in sorted(self.entries[kind].items()):
                if pattern is None or fnmatch.fnmatchcase(name, pattern) or pattern in name:
                    out.append(entry)
        return out


#: the base class of each kind, declared by the class itself with :func:`base_of` in the wing that owns the kind (the
#: registry imports none of them: attention patterns, views and datasets live in wings above the core)
BASES: dict[str, type] = {}


def base_of(kind: str):
    """Class decorator: the decorated class is the one every registered type of ``kind`` derives from."""

    def declare(cls: type) -> type:
        BASES[kind] = cls
        return cls

    return declare


def base_class(kind: str) -> type:
    """The class every registered type of a kind derives from (its module is imported before any type is registered:
    the built-in plugins import it)."""
    if kind not in BASES:
        raise RegistryError(f"no base class is declared for the kind '{kind}' (a class decorated with @base_of('{kind}'))")
    return BASES[kind]


def type_name(cls: Any) -> str:
    """The name in the ``type`` Literal of ``cls.Config``."""
    config = getattr(cls, "Config", None)
    if config is None or "type" not in getattr(config, "model_fields", {}):
        raise RegistryError(f"{cls!r} has no Config with a `type` field; see docs/plugins.md")
    args = get_args(config.model_fields["type"].annotation)
    if len(args) != 1 or not isinstance(args[0], str):
        raise RegistryError(f"{cls.__name__}.Config.type must be a Literal of one string, e.g. Literal['my_block']")
    return args[0]


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""
