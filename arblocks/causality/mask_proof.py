"""Blocks whose dependencies a matrix states (:class:`arblocks.core.block.DependencyMask`), proven at full size.

A block without a reach (attention, the embeddings of a sequence, a plugin's position-dependent block) cannot be
proven through a small window, and proving it on its full-size streams costs one pass per output position: too much
for PixelSNAIL's attention over a 32x32 image. When the block states its dependencies as boolean matrices, the proof
splits in three:

1. **The matrices at full size, exactly.** The block built for the full-size streams gives them; every pair of units
   a matrix allows is tested against the streams' ready times (:func:`arblocks.core.readiness.ready_times`): output
   unit ``i`` may read input unit ``j`` only if the latest channel of ``j`` is ready no later than the earliest
   channel of ``i``. Boolean, so exact, for any ordering, at ``N_out x N_in`` comparisons per map.
2. **The block keeps to its matrices at the check's size.** The check's float64 copy (built for the small image) runs
   alone on its whole streams: the dependencies of every output unit, from gradients and the value walk
   (:mod:`arblocks.causality.block_dependencies`), in training and evaluation mode and in each low precision the
   check asks for, must lie inside its own matrices.
3. **And at full size, spot-checked.** The full-size block in float64, at :data:`SPOT_UNITS` output units (the first
   and last in the generation order, the corners, the centre, the others drawn at random): every input unit outside
   the unit's row of a matrix is set to each walk value at once and the unit's outputs compared bit for bit, and its
   gradient there must be zero.

1 and 2 prove the block's statement at full size given what a reach is to a local block: the block reads through
its matrices at every size as it does at the check's (the code is the same; only the matrices grow). 3 tests that
premise at full size where proving every unit there costs too much.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ..core.ops import channel_groups
from ..core.readiness import ready_times
from ..core.streams import StreamInfo
from .block_dependencies import BLOCK_WALK, BlockViolation, LowPrecisions, Slot, caller, dependencies_in_modes, group_index, seeded

#: output units of the full-size block that the spot check of its matrices walks (in both modes)
SPOT_UNITS = 8
#: batch rows per pass of the spot check (attention at full size holds a score matrix per row); the walk's items fill
#: whole batches (SPOT_UNITS x the walk's values, padded), so that one unchanged batch serves them all
SPOT_BATCH = 8


def states_mask(layer) -> bool:
    """Whether a block gives a :class:`~arblocks.core.block.DependencyMask`."""
    method = getattr(layer, "dependency_mask", None)
    return callable(method) and method() is not None


def prove_by_mask(path: str, small, small_slots: list[Slot], small_out: StreamInfo, full_block, slots: list[Slot], out: StreamInfo,
                  rank: torch.Tensor, image_channels: int, modes, seed: int, generator: torch.Generator, limit: int,
                  low: LowPrecisions | None = None) -> list[BlockViolation] | None:
    """The violations the three parts find (see the module's docstring), or None if the block cannot run alone on its
    small streams. ``small`` is the check's float64 copy of the block with its ``small_slots`` and output
    ``small_out``; ``full_block`` the block built for the full size (float64, the same weights), reading ``slots``
    into ``out``; ``rank`` the ordering's ranks at full size. ``low``: the low precisions part 2's value walk also runs in."""
    full = _matrices(path, full_block, slots, out)
    if isinstance(full, BlockViolation):
        return [full]
    mine = _matrices(path, small, small_slots, small_out)
    if isinstance(mine, BlockViolation):
        return [mine]
    found = _late_reads(path, *full, slots, out, rank, image_channels, limit)
    honoured = _kept_small(path, small, small_slots, small_out, *mine, modes, seed, generator, limit, low)
    if honoured is None:
        return None
    found += honoured
    if not found:
        found = _spot_check(path, full_block, slots, out, *full, rank, image_channels, modes, seed, generator, limit)
    return found[:limit]


def _matrices(path: str, block, slots: list[Slot], out: StreamInfo) -> tuple[int, dict[str, torch.Tensor]] | BlockViolation:
    """(per_pixel, {slot name: [N_out, N_in] bool on the CPU}) for every map the block reads (all True for one its
    mask does not name), or the contract problem."""
    mask = block.dependency_mask()
    per_pixel, maps = mask.per_pixel, [s for s in slots if s.full.kind == "map"]
    if not isinstance(per_pixel, int) or per_pixel < 1:
        return _contract(path, f"its dependency mask's per_pixel must be a positive int, got {per_pixel!r}")
    keys = {(s.index if s.aux is None else s.aux): s for s in maps}
    unknown = [k for k in mask.reads if k not in keys]
    if unknown:
        return _contract(path, f"its dependency mask names {unknown[0]!r}, which is not a map the block reads (those are {sorted(map(str, keys))})")
    n_out = out.height * out.width * per_pixel
    matrices = {}
    for key, slot in keys.items():
        n_in = slot.full.height * slot.full.width * per_pixel
        matrix = mask.reads.get(key)
        if matrix is None:
            matrix = torch.ones(n_out, n_in, dtype=torch.bool)
        elif not isinstance(matrix, torch.Tensor) or matrix.dtype != torch.bool or tuple(matrix.shape) != (n_out, n_in):
            got = f"{matrix.dtype} {tuple(matrix.shape)}" if isinstance(matrix, torch.Tensor) else type(matrix).__name__
            return _contract(path, f"its dependency mask for {slot.name} must be a bool [{n_out}, {n_in}] tensor (units of output x units of input), got {got}")
        matrices[slot.name] = matrix.cpu()
    return per_pixel, matrices


def _contract(path: str, detail: str) -> BlockViolation:
    return BlockViolation(path, (-1, -1, -1), "", (-1, -1, -1), "contract", detail)


def unit_ready(info: StreamInfo, rank: torch.Tensor, image_channels: int, per_pixel: int, latest: bool) -> torch.Tensor:
    """[h * w * per_pixel] long in storage order ``(h w p)``: when each unit of a stream is ready, as the latest of its
    channels (an input) or the earliest (an output); a unit without channels is never read and may read anything."""
    per_channel = ready_times(info, rank, image_channels)[group_index(info, image_channels)]  # [C, h, w]
    unit = channel_groups(info.channels, per_pixel)
    empty = torch.full(per_channel.shape[1:], -1 if latest else torch.iinfo(torch.long).max, dtype=torch.long)
    times = [(per_channel[unit == p].amax(0) if latest else per_channel[unit == p].amin(0)) if bool((unit == p).any()) else empty
             for p in range(per_pixel)]
    return rearrange(torch.stack(times), "p h w -> (h w p)")


def _unit(index: int, info: StreamInfo, per_pixel: int) -> tuple[int, int, int]:
    """(sub-pixel group or -1, row, col) of a unit's storage index."""
    pixel, sub = divmod(index, per_pixel)
    return (sub if per_pixel > 1 else -1, *divmod(pixel, info.width))


def _late_reads(path, per_pixel, matrices, slots, out, rank, image_channels, limit) -> list[BlockViolation]:
    """Part 1: the pairs a full-size matrix allows where the input unit is ready after the output unit."""
    ready_out = unit_ready(out, rank, image_channels, per_pixel, latest=False)
    found = []
    for slot in (s for s in slots if s.full.kind == "map"):
        ready_in = unit_ready(slot.full, rank, image_channels, per_pixel, latest=True)
        late = matrices[slot.name] & (ready_in[None, :] > ready_out[:, None])
        for i, j in late.nonzero()[: limit - len(found)].tolist():
            found.append(BlockViolation(path, _unit(i, out, per_pixel), slot.name, _unit(j, slot.full, per_pixel)))
    return found


def _kept_small(path, small, slots, out, per_pixel, matrices, modes, seed, generator, limit, low=None) -> list[BlockViolation] | None:
    """Part 2: the check's copy's dependencies on its whole small streams, outside its own matrices."""
    maps = [s for s in slots if s.full.kind == "map"]
    inputs = [torch.randn(1, s.full.channels, s.full.height, s.full.width, generator=generator, dtype=torch.float64) for s in maps]
    labels = {s.name: torch.randint(s.full.channels, (1,), generator=generator) for s in slots if s.full.kind != "map"}
    out_index = channel_groups(out.channels, per_pixel)
    if int(out_index.max()) + 1 != per_pixel:  # fewer output channels than units: no unit of the matrices to compare
        return None
    deps = dependencies_in_modes(small, slots, inputs, labels, out_index, (out.height, out.width),
                                 [channel_groups(s.full.channels, per_pixel) for s in maps], [per_pixel] * len(maps), modes, seed, low)
    if deps is None:
        return None
    found = []
    for slot, dep in zip(maps, deps):
        outside = rearrange(dep, "po h w pi hi wi -> (h w po) (hi wi pi)") & ~matrices[slot.name]
        for i, j in outside.nonzero()[: limit - len(found)].tolist():
            found.append(BlockViolation(path, _unit(i, out, per_pixel), slot.name, _unit(j, slot.full, per_pixel), "mask",
                                        f" (at {out.height}x{out.width}, the check's size)"))
    return found


def _spot_units(out: StreamInfo, rank: torch.Tensor, image_channels: int, per_pixel: int, generator: torch.Generator) -> list[int]:
    """The output units of the spot check: first and last in the generation order, the corners, the centre, random."""
    ready = unit_ready(out, rank, image_channels, per_pixel, latest=False)
    h, w = out.height, out.width
    corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]
    chosen = [int(ready.argmin()), int(ready.argmax())]
    chosen += [(r * w + c) * per_pixel + int(torch.randint(per_pixel, (1,), generator=generator)) for r, c in corners]
    chosen += torch.randperm(len(ready), generator=generator)[:SPOT_UNITS].tolist()
    return list(dict.fromkeys(chosen))[:SPOT_UNITS]


def _spot_check(path, block, slots, out, per_pixel, matrices, rank, image_channels, modes, seed, generator, limit) -> list[BlockViolation]:
    """Part 3: at a few output units of the full-size block, everything outside their rows of the matrices."""
    maps = [s for s in slots if s.full.kind == "map"]
    base = [torch.randn(1, s.full.channels, s.full.height, s.full.width, generator=generator, dtype=torch.float64) for s in maps]
    labels = {s.name: torch.randint(s.full.channels, (1,), generator=generator) for s in slots if s.full.kind != "map"}
    run = seeded(caller(block, slots), labels, seed)
    out_units = channel_groups(out.channels, per_pixel)
    in_units = [channel_groups(s.full.channels, per_pixel) for s in maps]
    units = _spot_units(out, rank, image_channels, per_pixel, generator)

    def outside(u: int, i: int) -> torch.Tensor:  # [C_i, H_i, W_i] bool: the channels of map i that unit u must not read
        grid = rearrange(~matrices[maps[i].name][u], "(h w p) -> p h w", p=per_pixel, h=maps[i].full.height)
        return grid[in_units[i]]

    def outputs(y: torch.Tensor, row: int, u: int) -> torch.Tensor:  # unit u's channels in batch row ``row``
        sub, r, c = _unit(u, out, per_pixel)
        return y[row, out_units == max(sub, 0), r, c]

    weights = torch.rand(1, out.channels, out.height, out.width, generator=generator, dtype=torch.float64).add(0.5)  # no cancellations
    found: list[BlockViolation] = []
    for mode in modes:
        block.train(mode == "train")
        items = [(u, v) for u in units for v in BLOCK_WALK]
        items += items[-1:] * (-len(items) % SPOT_BATCH)
        with torch.no_grad():
            before = run([b.expand(SPOT_BATCH, *b.shape[1:]).clone() for b in base])
            for start in range(0, len(items), SPOT_BATCH):
                chunk = items[start : start + SPOT_BATCH]
                changed = [b.expand(len(chunk), *b.shape[1:]).clone() for b in base]
                for j, (u, value) in enumerate(chunk):
                    for i, t in enumerate(changed):
                        t[j][outside(u, i)] = value
                after = run(changed)
                for j, (u, _) in enumerate(chunk):
                    if not torch.equal(outputs(after, j, u), outputs(before, j, u)):
                        found.append(BlockViolation(path, _unit(u, out, per_pixel), "", (-1, -1, -1), "mask", " (at full size)"))
        for start in range(0, len(units), SPOT_BATCH):
            chunk = units[start : start + SPOT_BATCH]
            copies = [b.expand(len(chunk), *b.shape[1:]).clone().requires_grad_(True) for b in base]
            y = run(copies)
            if not y.requires_grad:
                break
            total = sum((outputs(y, j, u) * outputs(weights, 0, u)).sum() for j, u in enumerate(chunk))
            for i, grad in enumerate(torch.autograd.grad(total, copies, allow_unused=True)):
                for j, u in enumerate(chunk if grad is not None else ()):
                    hits = (grad[j] != 0) & outside(u, i)  # [C_i, H_i, W_i]
                    if bool(hits.any()):
                        c, r, q = hits.nonzero()[0].tolist()
                        sub = int(in_units[i][c]) if per_pixel > 1 else -1
                        found.append(BlockViolation(path, _unit(u, out, per_pixel), maps[i].name, (sub, r, q), "mask", " (at full size)"))
    return list(dict.fromkeys(found))[:limit]
