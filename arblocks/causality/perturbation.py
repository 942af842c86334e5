"""The value-perturbation pass of the causality check: dependencies that gradients cannot see.

A future pixel can reach an output with an exactly zero gradient: through ``.detach()``, ``round``, integer
arithmetic, a comparison, or a branch taken only for some values. This pass changes the image's values and compares
every output bit for bit, in the model's own arithmetic (float64 in the check).

**The walk.** The inputs are split into *groups* in generation order: one sub-pixel each for heads that predict a
pixel's channels one by one, one whole pixel for heads that predict a pixel jointly (all of its channels are then
out of reach of its own output). Starting from a random base image ``b``, the walk sets the groups, one at a time
from the last generated to the first, to a target image; then does the same for the next target. The targets are

    all 2^bits - 1, all 0, b next to itself (b + 1, or b - 1 at the top level), b

so every input sub-pixel is changed to the top level (from its random level), to 0 (from the top level: the all-max
base), to the level next to the base's (from 0, then back to the base: a change of one level on the base image).
Two consecutive images differ in exactly one group ``g``, so a change of an output between them is caused by ``g``
alone; every output that must not see ``g`` (``g`` is the output's own group or generated after it) must be bit for
bit equal in both. Going backwards makes each change happen on a background whose later groups already hold the
target, so the test of ``g`` from the zero base sees a future at the top level, and so on.

**Exact comparison.** Two outputs are compared only when they were computed the same way: at the same row of two
batches of the same shape, with the same random draws. (Not at two rows of one batch: vectorized elementwise
kernels treat a tensor's tail differently, so one image can differ in the last bit between rows; and dropout draws
differ per row.) See :func:`find_changes` for the arrangement that computes each image about once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: the targets of the walk, in order (see the module's docstring)
WALK = ("max", "zero", "neighbour", "base")


@dataclass(frozen=True)
class Change:
    """Output ``output`` (flat index into [C', H, W]) changed when input group ``group`` changed, by ``magnitude``."""

    output: int
    group: int
    magnitude: float


def groups_in_order(rank: torch.Tensor, channels: int, joint: bool) -> list[torch.Tensor]:
    """The input groups in generation order: each a bool mask [C, H, W]."""
    h, w = rank.shape
    pixels = sorted(range(h * w), key=lambda p: int(rank.reshape(-1)[p]))
    groups = []
    for p in pixels:
        r, col = divmod(p, w)
        for c in [None] if joint else range(channels):
            mask = torch.zeros(channels, h, w, dtype=torch.bool)
            mask[slice(None) if c is None else c, r, col] = True
            groups.append(mask)
    return groups


def output_group(rank: torch.Tensor, channels: int, out_channels: int) -> torch.Tensor:
    """[C', H, W]: the index of each output's own group (it must not see that group or any later one)."""
    order = torch.argsort(rank.reshape(-1))
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))
    position = position.reshape(rank.shape)
    if out_channels == 1:  # joint head: groups are whole pixels
        return position[None]
    return position[None] * channels + torch.arange(out_channels)[:, None, None]


def target(name: str, base: torch.Tensor, levels: int) -> torch.Tensor:
    top = levels - 1
    if name == "max":
        return torch.full_like(base, top)
    if name == "zero":
        return torch.zeros_like(base)
    if name == "neighbour":
        return torch.where(base < top, base + 1, base - 1)
    return base.clone()


def walk(base: torch.Tensor, groups: list[torch.Tensor], levels: int, targets=WALK) -> tuple[torch.Tensor, list[int]]:
    """[M, C, H, W] images (the first is ``base``) and, for each image after the first, the group that changed."""
    images, changed = [base], []
    current = base
    for name in targets:
        goal = target(name, base, levels)
        for g in reversed(range(len(groups))):
            mask = groups[g]
            if torch.equal(current[mask], goal[mask]):
                continue  # already there (a level that is already the target): nothing to test
            current = torch.where(mask, goal, current)
            images.append(current)
            changed.append(g)
    return torch.stack(images), changed


@dataclass
class WalkPlan:
    """The walk of a model (see the module's docstring), in any arithmetic: its images, the group each step changed,
    the groups, each output's own group, the conditioning of the base image (as the inputs' ``example`` gives it), the
    seed of the random draws every batch repeats, and the rows per batch."""

    images: torch.Tensor
    changed: list[int]
    groups: list[torch.Tensor]
    own: torch.Tensor
    cond: dict[str, torch.Tensor]
    draw: int
    rows: int


def plan_walk(model, rank: torch.Tensor, targets, seed: int) -> WalkPlan:
    """The walk from a random base image (the same for a seed, whatever the precision the walk then runs in)."""
    image, joint = model.image, model.head.joint
    generator = torch.Generator().manual_seed(seed + 2)
    base = torch.randint(0, image.levels, (1, image.channels, image.height, image.width), generator=generator)
    cond = {name: model.inputs[name].example(1, generator) for name in model.provided_inputs}
    groups = groups_in_order(rank, image.channels, joint)
    images, changed = walk(base[0], groups, image.levels, targets)
    own = output_group(rank, image.channels, 1 if joint else image.channels)
    draw = int(torch.randint(2**31, (1,), generator=generator))
    rows = max(8, min(128, 65536 // (image.height * image.width)))
    return WalkPlan(images, changed, groups, own, cond, draw, rows)


#: the least number of batches the walk's images are spread over: each image is computed ``1 + 1/stride`` times
MIN_STRIDE = 4


def find_changes(run, images: torch.Tensor, changed: list[int], own_group: torch.Tensor, rows: int, forbidden_only: bool = True,
                 tolerance: float = 0.0) -> list[Change]:
    """Every (output, group) where changing ``group`` changed an output that must not see it (with ``forbidden_only``
    off: any output, for a dependency map of models without a gradient path).

    ``run(batch)`` gives [B, C', K, H, W] parameters, with the same random draws for batches of the same shape.
    Images ``k`` and ``k + 1`` are compared at the same row of two batches of ``rows`` images: batch ``j`` holds images
    ``j, j + s, j + 2s, ...`` (``s`` batches), and one more batch holds ``s, 2s, 3s, ...``, so image ``k`` at row ``q``
    of batch ``j`` is followed by image ``k + 1`` at row ``q`` of batch ``j + 1``. The images are computed ``1 + 1/s``
    times over: ``s`` is at least :data:`MIN_STRIDE` (smaller batches cost the same per image, and the one extra batch
    is smaller), and ``rows`` at most. ``tolerance``: a change of at most this much is not counted (0: bit for bit).
    """
    own = own_group.reshape(-1)  # [C'*H*W]
    stride = min(len(images), max(MIN_STRIDE, math.ceil(len(images) / rows)))
    rows = math.ceil(len(images) / stride)
    padded = torch.cat([images, images[-1:].expand(rows * stride + 1 - len(images), *images.shape[1:])])
    group_of_step = torch.tensor(changed + [-1] * (len(padded) - 1 - len(changed)))  # -1: padding, nothing changed
    found: dict[tuple[int, int], float] = {}
    before = _flat(run(padded[0 : rows * stride : stride]))
    for j in range(1, stride + 1):
        after = _flat(run(padded[j : j + rows * stride : stride]))
        group = group_of_step[torch.arange(rows) * stride + j - 1]  # the group that changed from each row of `before` to `after`
        differs = (before != after) & ~(before.isnan() & after.isnan())  # [rows, C'*H*W, K], bit for bit; NaN equals NaN here
        if tolerance > 0:  # a non-deterministic device: changes within its measured noise are not changes
            differs &= ~((after - before).abs() <= tolerance)
        forbidden = group[:, None] >= own[None, :]  # an output must not see its own group or any generated after it
        hit = differs.any(-1) & (forbidden if forbidden_only else (group[:, None] >= 0))  # [rows, C'*H*W]
        magnitudes = (after - before).abs().nan_to_num(float("inf")).amax(-1)[hit].tolist()
        for (row, output), magnitude in zip(hit.nonzero().tolist(), magnitudes):
            key = (output, int(group[row]))
            found[key] = max(found.get(key, 0.0), magnitude)
        before = after
    return [Change(o, g, m) for (o, g), m in sorted(found.items())]


def _flat(view: torch.Tensor) -> torch.Tensor:
    return view.permute(0, 1, 3, 4, 2).reshape(view.shape[0], -1, view.shape[2])  # [B, C'*H*W, K]
