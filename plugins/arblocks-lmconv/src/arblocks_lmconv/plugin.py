"""The arblocks entry point of the lmconv plugin."""

from arblocks import hookimpl

from .blocks import LmGatedResnet, LocallyMaskedConv, Pono
from .importer import arblocks_register_importers  # noqa: F401 - the importer of the original's checkpoints
from .orderings import Hilbert, SCurve


@hookimpl
def arblocks_register_blocks(register):
    for cls in (LocallyMaskedConv, Pono, LmGatedResnet):
        register(cls)


@hookimpl
def arblocks_register_orderings(register):
    register(SCurve)
    register(Hilbert)
