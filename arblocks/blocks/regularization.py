"""Dropout."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.block import Elementwise
from ..core.hookspecs import hookimpl
from ..core.ops import dropout
from ..spec.models import BlockConfig


class DropoutConfig(BlockConfig):
    """Dropout of single values in training mode (identity in evaluation mode)."""

    type: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing a value.")


class Dropout(Elementwise):
    Config = DropoutConfig

    def forward(self, x):
        return dropout(x, self.config.p, self.training)


@hookimpl
def arblocks_register_blocks(register):
    register(Dropout)
