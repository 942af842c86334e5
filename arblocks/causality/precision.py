"""The value walk at the precisions users run: float32, and bfloat16 autocast.

The gradient map and the walk of :mod:`arblocks.causality.perturbation` run in float64. A block may compute another
function in lower precision (a fused or compiled kernel for float32 or bf16 beside a float64 reference path), so a
leak there would be invisible to them. This pass runs the same walk, from the same base image and targets, on the
model as users run it: its float32 weights (the float64 probe's, cast back, which restores them exactly), on the CPU
or the given device, under ``torch.autocast(dtype=torch.bfloat16)`` for ``bf16``. Every output that must not see the
changed input group is compared between two batches of the same shape at the same row, as in float64.

**Tolerance.** On a deterministic device (the CPU) the comparison is bit for bit (tolerance 0): a causal model
computes an output from the same values in the same way, whatever the future holds. Where a kernel is not
deterministic (atomics on a GPU), the pass first runs one batch twice and takes the largest difference as the noise;
the tolerance is then 4x that noise, and any change above it is a leak. A leaked future value moves an output by its
weight times the change of the input (the walk changes a sub-pixel by at least one level of 2^bits, i.e. 2 / (2^bits - 1)
in the model's [-1, 1] scale), so a leak is missed only when that product is below the stated tolerance, which
the report gives.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from ..core.model import ARModel
from .perturbation import Change, find_changes, plan_walk

#: the precisions the walk can run in, besides float64: the model's float32 weights, alone or under autocast to this dtype
AUTOCAST = {"float32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = tuple(AUTOCAST)


def autocast_for(precision: str, device_type: str):
    """The context that runs float32 weights in ``precision``: autocast for bf16 and fp16, nothing for float32."""
    dtype = AUTOCAST[precision]
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def precisions_for(precision: str | None) -> tuple[str, ...]:
    """The precisions to prove for a run in ``precision`` (train's and eval's fp32, bf16, fp16): float32 always."""
    return ("float32",) if precision in (None, "fp32", "float32") else ("float32", precision)


#: the tolerance is this multiple of the measured noise of a non-deterministic device (0 noise: bit for bit)
NOISE_FACTOR = 4.0


def low_precision_model(probe: ARModel, device: str | torch.device = "cpu") -> ARModel:
    """The model in float32 (from the float64 probe, whose weights are the float32 ones widened: exact) on ``device``."""
    return copy.deepcopy(probe).float().to(device)


def precision_changes(probe: ARModel, rank: torch.Tensor, targets, seed: int, precision: str, device: str | torch.device = "cpu",
                      model: ARModel | None = None) -> tuple[list[Change], list[torch.Tensor], int, float]:
    """The walk in ``precision``: the changes of outputs that must not see the changed group, the groups, the walk's
    length and the tolerance used. ``model``: the float32 model to use (default: made from ``probe``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}': choose from {', '.join(PRECISIONS)}")
    model = model if model is not None else low_precision_model(probe, device)
    model.train(probe.training)
    device = next(model.parameters(), torch.empty(0)).device
    plan = plan_walk(model, rank, targets, seed)  # the float64 walk's base image, conditioning and draws
    cond = {k: (v.float() if v.is_floating_point() else v).to(device) for k, v in plan.cond.items()}

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), autocast_for(precision, device.type):
            torch.manual_seed(plan.draw)
            batch_cond = {k: v.expand(len(batch), *v.shape[1:]) for k, v in cond.items()}
            view = model.head.per_dimension(model.forward_float(model.to_float(batch.to(device)), **batch_cond))
        return view.float().cpu()

    with torch.no_grad():
        first = plan.images[: plan.rows]
        noise = float((run(first) - run(first)).abs().nan_to_num(0.0).max()) if len(first) else 0.0
        tolerance = NOISE_FACTOR * noise
        found = find_changes(run, plan.images, plan.changed, plan.own, plan.rows, tolerance=tolerance)
    return found, plan.groups, len(plan.changed), tolerance
