"""The import paths of the flat layout (``arblocks.incremental``, ``arblocks.attention_patterns``, ...), which plugins
written before the wings still use: each resolves to its module's new place, with a :class:`DeprecationWarning`.

An old path gives a small module that forwards every attribute to the new module(s), so the new modules keep their
own names and specs. Nothing here is imported by the library itself; ``arblocks/__init__`` installs the finder.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

#: old module -> the modules that now hold its names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "arblocks.errors": ("arblocks.spec.errors",),
    "arblocks.spec_size": ("arblocks.spec.limits",),
    "arblocks.edit": ("arblocks.spec.edit",),
    "arblocks.validate": ("arblocks.core.validate", "arblocks.spec.reading"),
    "arblocks.streams": ("arblocks.core.streams",),
    "arblocks.ops": ("arblocks.core.ops",),
    "arblocks.readiness": ("arblocks.core.readiness",),
    "arblocks.layers": ("arblocks.core.layers",),
    "arblocks.incremental": ("arblocks.core.incremental",),
    "arblocks.block": ("arblocks.core.block",),
    "arblocks.head": ("arblocks.core.head",),
    "arblocks.inputs": ("arblocks.core.inputs",),
    "arblocks.ordering": ("arblocks.core.ordering",),
    "arblocks.hookspecs": ("arblocks.core.hookspecs",),
    "arblocks.registry": ("arblocks.core.registry",),
    "arblocks.plugins": ("arblocks.core.plugins",),
    "arblocks.schema": ("arblocks.core.schema",),
    "arblocks.builder": ("arblocks.core.builder",),
    "arblocks.model": ("arblocks.core.model",),
    "arblocks.catalogue": ("arblocks.core.catalogue",),
    "arblocks.augmentation": ("arblocks.core.augmentation",),
    "arblocks.transformations": ("arblocks.staged.transformations", "arblocks.core.augmentation"),
    "arblocks.attention_patterns": ("arblocks.attention.patterns",),
    "arblocks.attention_kernels": ("arblocks.attention.kernels",),
    "arblocks.tiled_attention": ("arblocks.attention.tiled",),
    "arblocks.flex_attention": ("arblocks.attention.flex",),
    "arblocks.sequence": ("arblocks.attention.sequence",),
    "arblocks.perturbation": ("arblocks.causality.perturbation",),
    "arblocks.purity": ("arblocks.causality.purity",),
    "arblocks.size_rule": ("arblocks.causality.size_rule",),
    "arblocks.block_proof": ("arblocks.causality.block_proof",),
    "arblocks.receptive_field": ("arblocks.causality.receptive_field",),
    "arblocks.report": ("arblocks.causality.report",),
    "arblocks.draws": ("arblocks.sampling.draws",),
    "arblocks.cached": ("arblocks.sampling.cached",),
    "arblocks.sample": ("arblocks.sampling.sample", "arblocks.sampling.grid"),
    "arblocks.views": ("arblocks.staged.views",),
    "arblocks.stages": ("arblocks.staged.stages",),
    "arblocks.train": ("arblocks.training.loop",),
    "arblocks.checkpoint": ("arblocks.training.checkpoint",),
    "arblocks.precision": ("arblocks.training.precision",),
    "arblocks.distributed": ("arblocks.training.distributed",),
    "arblocks.order_average": ("arblocks.training.order_average",),
}


def _forwarder(targets: list[types.ModuleType]):
    def __getattr__(name: str):
        for module in targets:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {targets[0].__name__!r} has no attribute {name!r}")

    return __getattr__


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of :data:`MOVED`."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return None  # a plain module

    def exec_module(self, module: types.ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new[0]}: import from there (or from the wing, e.g. arblocks.{new[0].split('.')[1]}); "
                      "the old path will be removed in a later release", DeprecationWarning, stacklevel=2)
        targets = [importlib.import_module(name) for name in new]
        module.__getattr__ = _forwarder(targets)
        module.__doc__ = f"Moved to {', '.join(new)}."
        module.__all__ = [name for target in targets for name in getattr(target, "__all__", [n for n in vars(target) if not n.startswith("_")])]


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
