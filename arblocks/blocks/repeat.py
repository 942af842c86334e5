"""``repeat``: a sub-list of blocks unrolled several times (each time with its own weights)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from ..core.hookspecs import hookimpl
from ..spec.models import NodeConfig, blocks_field


class RepeatConfig(NodeConfig):
    """Repeat a sub-list of blocks `times` times; each repetition has its own weights and reads and writes streams like the blocks around it."""

    type: Literal["repeat"] = "repeat"
    times: int = Field(gt=0, le=10_000, description="Number of repetitions.")
    body: list[Any] = blocks_field("The blocks to repeat.", min_length=1)


class Repeat:
    """A structural node: the builder unrolls it; it has no module of its own."""

    Config = RepeatConfig
    examples = [{"times": 2}]
    structural: ClassVar[bool] = True

    @staticmethod
    def expand(config: RepeatConfig):
        """``(label, path key, nodes)`` for each repetition."""
        return [(f"[{t}]", "body", config.body) for t in range(config.times)]


@hookimpl
def arblocks_register_blocks(register):
    register(Repeat)
