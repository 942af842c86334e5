"""Pure, batch-independent forward: the part of the causality check that looks for state.

A block that keeps state can carry a future pixel from one call (or one image of a batch) into the next, which no
dependency map of a single call shows. In each mode the check runs the model on one batch and asks:

* **buffers**: does any buffer change during forward (a running statistic, a remembered input)?
* **repeat**: does the same input, with the same random draws, give bit-for-bit the same outputs on a second call?
* **neighbours**: do an image's outputs stay bit-for-bit the same when the other images of its batch change?
* **batch size** (evaluation mode): does an image alone give the outputs it gives inside a batch (to 1e-9, since
  another batch size may take another summation order)?

Each problem names the first block (in execution order) whose output differs, found with forward hooks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..core.model import ARModel


@dataclass(frozen=True)
class PurityProblem:
    kind: str  # "buffers", "repeat", "neighbours", "batch size"
    block: str  # the block's path in the spec, or "model"
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.block}: {self.message}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "block": self.block, "message": self.message}


def block_path(model: ARModel, module_name: str) -> str:
    """The spec path of the block that owns ``module_name`` (a parameter, buffer or module name of the model)."""
    parts = module_name.split(".")
    if parts[0] == "layers" and len(parts) > 1:
        index = int(parts[1])
        step = next((s for s in model.steps if s.index == index), None)
        return f"{step.path} ({step.type})" if step else f"layer {index}"
    if parts[0] == "head":
        return f"head ({model.spec.head.type})"
    if parts[0] == "inputs" and len(parts) > 1:
        return f"input '{parts[1]}'"
    return module_name


@contextlib.contextmanager
def recording(model: ARModel):
    """Record every block's output, in execution order, as (module name, output)."""
    calls: list[tuple[str, torch.Tensor]] = []
    named = [(f"layers.{i}", m) for i, m in enumerate(model.layers)] + [("head", model.head)]
    named += [(f"inputs.{k}", m) for k, m in model.inputs.items()]

    def hook(name):
        return lambda module, args, output: calls.append((name, output.detach().clone() if isinstance(output, torch.Tensor) else None))

    handles = [m.register_forward_hook(hook(name)) for name, m in named]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _same(a: torch.Tensor | None, b: torch.Tensor | None, tolerance: float | None) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return a is None and b is None
    if tolerance is None:
        return torch.equal(a.nan_to_num(), b.nan_to_num())
    return torch.allclose(a, b, rtol=tolerance, atol=tolerance * 1e-3, equal_nan=True)


def first_difference(model, first, second, rows=None, tolerance=None) -> str | None:
    """The first block whose output differs between two recordings (``rows``: compare those images only)."""
    for (name, a), (_, b) in zip(first, second):
        if rows is not None and a is not None and b is not None:
            a, b = a[rows], b[rows]
        if not _same(a, b, tolerance):
            return block_path(model, name)
    return None


def _run(model, x, cond, seed):
    with torch.random.fork_rng(devices=[]), torch.no_grad(), recording(model) as calls:
        torch.manual_seed(seed)
        model.forward_float(model.to_float(x).double(), **cond)
    return calls


def purity_problems(model: ARModel, x: torch.Tensor, cond: dict, other: torch.Tensor, seed: int = 0) -> list[PurityProblem]:
    """Problems of ``model`` in its current mode. ``x``: a batch of at least two images; ``other``: other
    values for images 1.. of that batch (image 0 must not notice them)."""
    problems = []
    before = {name: b.detach().clone() for name, b in model.named_buffers()}
    first = _run(model, x, cond, seed)
    for name, b in model.named_buffers():
        if name in before and not _same(before[name], b, None):
            problems.append(PurityProblem("buffers", block_path(model, name), f"buffer '{name}' changes during forward"))
    second = _run(model, x, cond, seed)
    where = first_difference(model, first, second)
    if where:
        problems.append(PurityProblem("repeat", where, "the same input gives other outputs on a second call (state kept between calls)"))
    changed = _run(model, torch.cat([x[:1], other]), cond, seed)
    where = first_difference(model, first, changed, rows=slice(0, 1))
    if where:
        problems.append(PurityProblem("neighbours", where, "an image's outputs change with the other images of its batch"))
    if not model.training:
        single = {k: v[:1] for k, v in cond.items()}
        alone = _run(model, x[:1], single, seed)
        where = first_difference(model, first, alone, rows=slice(0, 1), tolerance=1e-9)
        if where:
            problems.append(PurityProblem("batch size", where, "an image's outputs change with the size of its batch"))
    return problems
