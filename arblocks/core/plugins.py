"""Plugin loading: built-in plugin modules and ``arblocks`` entry points, each isolated.

* A plugin that fails to import (or whose hooks raise) is recorded with its error and skipped,
  with a warning; ``ARBLOCKS_STRICT_PLUGINS=1`` makes that fatal.
* ``ARBLOCKS_DISABLE_PLUGINS=name,...`` skips chosen entry points.
* Two plugins registering one type name is an error naming both.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Iterable
from typing import Any

import pluggy

from ..spec.errors import RegistryError
from . import hookspecs
from .registry import KINDS, PluginInfo, Registry

ENTRY_POINT_GROUP = "arblocks"

BUILTIN_PLUGINS = (
    "arblocks.blocks.repeat",
    "arblocks.blocks.masked_conv",
    "arblocks.blocks.conv",
    "arblocks.blocks.shifted_conv",
    "arblocks.blocks.activations",
    "arblocks.blocks.regularization",
    "arblocks.blocks.residual",
    "arblocks.blocks.gated",
    "arblocks.blocks.attention",
    "arblocks.blocks.sequence_embedding",
    "arblocks.blocks.transformer",
    "arblocks.blocks.combine",
    "arblocks.blocks.embedding",
    "arblocks.heads.categorical",
    "arblocks.heads.logistic_mixture",
    "arblocks.core.inputs",
    "arblocks.core.ordering",
    "arblocks.attention.patterns",
    "arblocks.data.sources",
    "arblocks.data.standard",
    "arblocks.data.libraries",
    "arblocks.staged.views",
    "arblocks.staged.transformations",
    "arblocks.weights.importers.pixelcnn_pp",
    "arblocks.weights.importers.pixelcnn_pp_tf",
    "arblocks.weights.importers.image_gpt",
    "arblocks.weights.importers.pixelsnail_tf",
)

HOOKS = {
    "block": "arblocks_register_blocks",
    "head": "arblocks_register_heads",
    "input": "arblocks_register_inputs",
    "ordering": "arblocks_register_orderings",
    "attention": "arblocks_register_attention_patterns",
    "dataset": "arblocks_register_datasets",
    "view": "arblocks_register_views",
    "transformation": "arblocks_register_transformations",
    "importer": "arblocks_register_importers",
}


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


def strict_mode() -> bool:
    return os.environ.get("ARBLOCKS_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes", "on"}


def disabled_plugins() -> set[str]:
    return {n.strip() for n in os.environ.get("ARBLOCKS_DISABLE_PLUGINS", "").split(",") if n.strip()}


def arblocks_version() -> str | None:
    """The installed distribution's version (the package's ``__version__`` reads it too)."""
    try:
        return importlib.metadata.version("arblocks")
    except importlib.metadata.PackageNotFoundError:
        return None


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _fail(registry: Registry, name: str, distribution: str, version: str | None, error: BaseException) -> None:
    message = f"{type(error).__name__}: {error}"
    if strict_mode():
        raise RegistryError(f"plugin '{name}' ({distribution}) failed to load: {message}") from error
    registry.plugins.append(PluginInfo(name, distribution, version, message))
    warnings.warn(f"arblocks plugin '{name}' ({distribution}) failed to load and was skipped: {message}", PluginWarning, stacklevel=3)


def load_registry(
    *,
    entry_points: bool = True,
    extra_plugins: Iterable[tuple[str, Any]] = (),
) -> Registry:
    """Build a registry from the built-in plugins, the installed entry points and ``extra_plugins``.

    ``extra_plugins`` are ``(name, plugin_object)`` pairs, for tests and embedding applications.
    """
    registry = Registry()
    pm = make_plugin_manager()
    sources: dict[str, tuple[str, str | None]] = {}

    version = arblocks_version()
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        sources[module_name] = ("arblocks", version)

    if entry_points:
        disabled = disabled_plugins()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else None
            if ep.name in disabled or dist in disabled:
                registry.plugins.append(PluginInfo(ep.name, dist, version, "disabled by ARBLOCKS_DISABLE_PLUGINS"))
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as error:  # noqa: BLE001 - isolation is the point
                _fail(registry, ep.name, dist, version, error)
                continue
            sources[ep.name] = (dist, version)

    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        sources[name] = ("(in-process)", None)

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        bad = getattr(error, "plugin_name", None) or getattr(getattr(error, "plugin", None), "__name__", "?")
        raise RegistryError(f"plugin '{bad}' implements a hook arblocks does not have: {error}") from error

    for kind in KINDS:
        caller = getattr(pm.hook, HOOKS[kind])
        for impl in reversed(caller.get_hookimpls()):
            dist, version = sources.get(impl.plugin_name, ("?", None))
            try:
                impl.function(register=functools.partial(registry.add, kind, plugin=impl.plugin_name, distribution=dist))
            except RegistryError:
                raise
            except Exception as error:  # noqa: BLE001
                _fail(registry, impl.plugin_name, dist, version, error)

    for name, (dist, version) in sources.items():
        if not any(p.name == name for p in registry.plugins):
            registry.plugins.append(PluginInfo(name, dist, version))
    return registry


@functools.cache
def get_registry() -> Registry:
    """The registry of this process (built once)."""
    return load_registry()
