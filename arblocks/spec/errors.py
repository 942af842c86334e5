"""Problems found in a spec, and the exceptions that carry them.

Every problem has a JSON path (RFC 6901 style, ``/body/3/kernel_size``), a short machine-readable
type and a human message. Validation and building collect every problem they can before raising
one :class:`SpecError` that lists them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class ArblocksError(Exception):
    """Base class of the errors arblocks raises on purpose."""


class SpecWarning(UserWarning):
    """A spec that builds but probably does not say what its author meant (an input that no block reads)."""


class SpecError(ArblocksError):
    """A spec is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.source or 'spec'}: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class BlockError(ArblocksError):
    """Raised by a block while it is built; ``field`` names the offending config field, if any."""

    def __init__(self, message: str, field: str | None = None, type: str = "invalid_block"):
        self.message = message
        self.field = field
        self.type = type
        super().__init__(message)


class RegistryError(ArblocksError):
    """The set of installed plugins is inconsistent (a name registered twice, a broken plugin in strict mode)."""


def json_path(parts: Iterable[str | int]) -> str:
    """``('body', 3, 'kernel_size')`` -> ``/body/3/kernel_size``."""
    out = []
    for part in parts:
        out.append(str(part).replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(out) if out else ""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix, or an empty string when nothing is close."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""
