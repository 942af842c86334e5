"""Block by block at full size: the causality proof for images too large to check whole.

The builder composes the causal states of the streams from each block's statement (:mod:`arblocks.core.streams`): if
every block's output at a position depends only on inputs its statement allows, the model is causal at any size.
A state is a *ready time* per position and channel group (:func:`arblocks.core.readiness.ready_times`: the number of
sub-pixels, in generation order, that its value may depend on), so a block keeps its statement exactly when

    output (g, p) depends on input (g', q)  =>  ready_in(g', q) <= ready_out(g, p)

at every position of the full-size streams. This module tests that inequality for every local block (one that
states a ``reach()``: translation-equivariant, zero-padded, reading its inputs within the reach) and for the head:

1. The block alone, with its real weights in float64, runs on random inputs of a small window whose output
   positions include every *border case* of the full-size stream (distance to each border up to the reach, phase
   modulo an upsampling factor; see :mod:`arblocks.causality.size_rule`). Its dependencies there come from float64 gradients
   of every output (position, channel group) and from a value walk (each input position and group set to 1, -1 and 0,
   outputs compared bit for bit at equal batch rows), in training and evaluation mode.
2. Every full-size output position is mapped to the window's position with the same border case, its dependencies
   shifted by the offset between the two, and the inequality is tested against the full-size ready times, so any
   ordering works. A dependency outside the block's stated reach is reported too: the mapping relies on it.

Blocks without a reach (attention, embeddings of positions, position-dependent plugin blocks) are proven on their
whole full-size streams when that is affordable (attention at a U-Net's 8x8 level, or over a 32x32 image's pixels),
the block built for the full size when the check's copy holds masks for the small image; the others are checked only
inside the model, at the size of the whole-model check, and the report names them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from ..core.incremental import Reach
from ..core.model import ARModel
from ..core.ops import channel_groups
from ..core.readiness import ready_times, stream_groups
from ..core.streams import Causal, StreamInfo, canonical
from .size_rule import smallest_covering

#: the values the block-level walk sets each input position's group to
BLOCK_WALK = (1.0, -1.0, 0.0)
#: multiply-accumulates a block without a reach may cost to be proven on its full-size streams: about a second for
#: `build`'s proof of plugin blocks; `arblocks check` allows ten times as much (CHECK_FULL_STREAM_BUDGET)
FULL_STREAM_BUDGET = 1e10
CHECK_FULL_STREAM_BUDGET = 1e11


@dataclass(frozen=True)
class BlockViolation:
    """Output (group, row, col) of the block at ``path`` depends on input ``slot`` at (group, row, col), at full size,
    although its stated causality forbids it (``kind`` "order"), or beyond its stated reach (``kind`` "reach")."""

    path: str
    output: tuple[int, int, int]
    slot: str
    input: tuple[int, int, int]
    kind: str = "order"

    def __str__(self) -> str:
        if self.kind == "reach":
            source = f"{self.slot} {_where(self.input)}" if self.input[1] >= 0 else "its inputs outside that reach (all set to one value)"
            return f"{self.path}: output {_where(self.output)} reads {source}, beyond the reach the block states"
        return f"{self.path}: output {_where(self.output)} <- {self.slot} {_where(self.input)}, which the block's causal statement forbids"


def _where(at: tuple[int, int, int]) -> str:
    group, row, col = at
    return f"(row {row}, col {col}" + (f", channel group {group})" if group >= 0 else ")")


@dataclass
class BlockProofs:
    """What the block-level proof covered: ``proven`` block paths, ``uncovered`` ones (no reach) and violations."""

    proven: list[str] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    violations: list[BlockViolation] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.uncovered and not self.violations


@dataclass
class _Slot:
    """One map the block reads: a positional input or an auxiliary field."""

    name: str
    full: StreamInfo
    index: int | None = None  # position among the block's inputs; None for an auxiliary field
    aux: str | None = None


@dataclass
class _Axis:
    """The window along one axis: its output size, and each full-size output position's window representative."""

    small_out: int
    small_in: list[int]
    representative: torch.Tensor  # [full_out] long
    anchors_full: list[torch.Tensor]  # per slot: [full_out] input position each full output corresponds to
    anchors_small: list[torch.Tensor]  # per slot: [small_out]


def _axis(full_out: int, full_ins: list[int], before: int, after: int) -> _Axis | None:
    """Plan the window along one axis for a reach of ``before``/``after`` input positions."""
    b_out, a_out, period, ratios = 0, 0, 1, []
    for full_in in full_ins:
        if full_in >= full_out:
            k = full_in // full_out
            if k * full_out != full_in:
                return None
            ratios.append(("down", k))
            b_out, a_out = max(b_out, -(-before // k)), max(a_out, -(-after // k))
        else:
            f = full_out // full_in
            if f * full_in != full_out:
                return None
            ratios.append(("up", f))
            b_out, a_out, period = max(b_out, f * before + f - 1), max(a_out, f * after + f - 1), math.lcm(period, f)
    if full_out % period:
        return None
    n = smallest_covering(full_out, b_out, a_out, period)
    first: dict[tuple[int, int, int], int] = {}
    for p, case in enumerate(_cases(n, b_out, a_out, period)):
        first.setdefault(case, p)
    representative = torch.tensor([first[c] for c in _cases(full_out, b_out, a_out, period)])
    small_in, anchors_full, anchors_small = [], [], []
    for kind, k in ratios:
        if kind == "down":
            small_in.append(n * k)
            anchors_full.append(torch.arange(full_out) * k)
            anchors_small.append(torch.arange(n) * k)
        else:
            small_in.append(n // k)
            anchors_full.append(torch.arange(full_out) // k)
            anchors_small.append(torch.arange(n) // k)
    return _Axis(n, small_in, representative, anchors_full, anchors_small)


def _cases(size: int, before: int, after: int, period: int) -> list[tuple[int, int, int]]:
    """The border case of each position, in order (the first window position with a case represents it)."""
    return [(p % period, min(p, before), min(size - 1 - p, after)) for p in range(size)]


def step_slots(model: ARModel) -> tuple[list[list[_Slot]], StreamInfo]:
    """For every step of a model built at full size, the maps it reads with their full-size stream infos; and the
    info of the stream the head reads."""
    result = []

    def record(step, inputs, aux):
        slots = [_Slot(f"input {i} ({'pop ' if ref.kind == 'pop' else ''}{ref.name})", info, index=i) for i, (ref, info) in enumerate(zip(step.inputs, inputs))]
        slots += [_Slot(f"field '{name}'", step.aux_info[name], aux=name) for name in aux]
        result.append(slots)
        return step.info

    streams = model.replay(model.start_infos(), record)
    return result, streams[model.head_in]


def _group_index(info: StreamInfo, image_channels: int) -> torch.Tensor:
    """[channels]: the index (into :func:`ready_times`' first axis) of each channel's group."""
    groups = stream_groups(info, image_channels)
    if len(groups) == 1:
        return torch.zeros(info.channels, dtype=torch.long)
    lookup = {g: i for i, g in enumerate(groups)}
    return torch.tensor([lookup[int(g)] for g in channel_groups(info.channels, image_channels)])


def _reduce(t: torch.Tensor, index: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, G, h, w]: the max over each group's channels."""
    return torch.stack([t[:, index == g].amax(1) if bool((index == g).any()) else t.new_zeros(t.shape[0], *t.shape[2:])
                        for g in range(groups)], dim=1)


def block_dependencies(call, maps: list[torch.Tensor], extra: dict, out_index: torch.Tensor, out_groups: int,
                       in_indices: list[torch.Tensor], in_groups: list[int], seed: int) -> list[torch.Tensor]:
    """Per map: [G_out, h, w, G_in, h_in, w_in] bool, the dependencies of ``call`` (a function of the maps, float64)
    on its window, from gradients at a random point and from the block-level value walk."""

    run = _seeded(call, extra, seed)
    base = [m[:1] for m in maps]
    out = run(base)
    g_out, h, w = out_groups, out.shape[2], out.shape[3]
    n_out = g_out * h * w
    copies = [b.expand(n_out, *b.shape[1:]).clone().requires_grad_(True) for b in base]
    y = run(copies)
    selector = torch.zeros(n_out, g_out, h, w, dtype=y.dtype)
    selector.view(n_out, -1)[torch.arange(n_out), torch.arange(n_out)] = 1.0
    weights = selector[:, out_index] * torch.rand(y.shape[1], 1, 1, generator=torch.Generator().manual_seed(seed), dtype=y.dtype).add(0.5)
    grads = torch.autograd.grad((y * weights).sum(), copies, allow_unused=True) if y.requires_grad else [None] * len(copies)
    result = []
    for i, (m, grad) in enumerate(zip(base, grads)):
        dep = torch.zeros(n_out, in_groups[i], *m.shape[2:], dtype=torch.bool)
        if grad is not None:
            dep |= _reduce(grad.abs(), in_indices[i], in_groups[i]) != 0
        with torch.no_grad():
            dep |= _walk(run, base, i, in_indices[i], in_groups[i], out_index, g_out)
        result.append(dep.reshape(g_out, h, w, *dep.shape[1:]))
    return result


def _seeded(call, labels: dict, seed: int):
    """``call`` on a batch of maps, with the labels repeated to the batch and the same random draws at every call
    (dropout in training mode), so that two batches of one shape are computed alike."""

    def run(batch_maps):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return call(batch_maps, {k: v.expand(batch_maps[0].shape[0], *v.shape[1:]) for k, v in labels.items()})

    return run


def _walk(run, base: list[torch.Tensor], slot: int, index: torch.Tensor, groups: int, out_index, out_groups) -> torch.Tensor:
    """[G_out * h * w, G_in, h_in, w_in] bool: outputs that change when one input position's group takes a walk value."""
    _, c, h_in, w_in = base[slot].shape
    n = groups * h_in * w_in
    items = torch.arange(n)
    g, rest = items // (h_in * w_in), items % (h_in * w_in)
    chosen = (index[None, :] == g[:, None])  # [n, C]: the channels each item changes
    same = [b.expand(n, *b.shape[1:]) for b in base]
    before = run([s.clone() for s in same])
    changed = torch.zeros(n, out_groups, *before.shape[2:], dtype=torch.bool)
    for value in BLOCK_WALK:
        maps = [s.clone() for s in same]
        target = maps[slot]
        mask = torch.zeros(n, c, h_in * w_in, dtype=torch.bool)
        mask[items, :, rest] = chosen  # item j changes its group's channels at its position
        target.masked_fill_(mask.reshape(n, c, h_in, w_in), value)
        after = run(maps)
        changed |= _reduce((after != before).to(before.dtype), out_index, out_groups) != 0
    # [n, G_out, h, w] -> [G_out * h * w, G_in, h_in, w_in]
    return changed.reshape(groups, h_in, w_in, -1).permute(3, 0, 1, 2)


def _inputs(slots: list[_Slot], rows: _Axis, cols: _Axis, generator: torch.Generator) -> tuple[list[torch.Tensor], dict]:
    """Random float64 windows for the map slots and example labels for the others (keyed by slot name)."""
    maps, labels, i = [], {}, 0
    for slot in slots:
        if slot.full.kind == "map":
            shape = (1, slot.full.channels, rows.small_in[i], cols.small_in[i])
            maps.append(torch.randn(shape, generator=generator, dtype=torch.float64))
            i += 1
        else:
            labels[slot.name] = torch.randint(slot.full.channels, (1,), generator=generator)
    return maps, labels


def _caller(layer, slots: list[_Slot]):
    """A function (maps, labels) -> output that calls a block with its positional inputs and auxiliary fields."""

    def call(maps, labels):
        args, aux, it = {}, {}, iter(maps)
        for slot in slots:
            value = next(it) if slot.full.kind == "map" else labels[slot.name]
            if slot.index is None:
                aux[slot.aux] = value
            else:
                args[slot.index] = value
        return layer(*(args[i] for i in sorted(args)), **aux)

    return call


def _violations(path: str, slot: _Slot, dep: torch.Tensor, rows: _Axis, cols: _Axis, i: int, reach: Reach,
                ready_in: torch.Tensor, ready_out: torch.Tensor, limit: int) -> list[BlockViolation]:
    """Map the window's dependencies [G_out, h, w, G_in, h_in, w_in] onto every full-size position and test them."""
    found = []
    nz = dep.nonzero()  # [K, 6]: go, ro, co, gi, ri, ci
    if not len(nz):
        return found
    go, ro, co, gi, ri, ci = nz.unbind(1)
    d_row, d_col = ri - rows.anchors_small[i][ro], ci - cols.anchors_small[i][co]
    outside = (d_row < -reach.top) | (d_row > reach.bottom) | (d_col < -reach.left) | (d_col > reach.right)
    for k in outside.nonzero()[:limit, 0].tolist():
        found.append(BlockViolation(path, (int(go[k]), int(ro[k]), int(co[k])), slot.name, (int(gi[k]), int(ri[k]), int(ci[k])), "reach"))
    if found:
        return found
    # every full-size output (pr, pc), with the dependencies of its representative shifted by the anchors' offset
    pr, pc = torch.meshgrid(torch.arange(len(rows.representative)), torch.arange(len(cols.representative)), indexing="ij")
    pr, pc = pr.reshape(-1), pc.reshape(-1)
    rr, rc = rows.representative[pr], cols.representative[pc]
    for s in torch.unique(rr * dep.shape[2] + rc).tolist():
        full = ((rr * dep.shape[2] + rc) == s).nonzero()[:, 0]  # full positions represented by window position s
        mine = ((ro * dep.shape[2] + co) == s).nonzero()[:, 0]  # the window's dependencies at s
        if not len(mine):
            continue
        p_r, p_c = pr[full][:, None], pc[full][:, None]  # [m, 1]
        q_r = ri[mine][None] + (rows.anchors_full[i][p_r] - rows.anchors_small[i][ro[mine]][None])  # [m, k]
        q_c = ci[mine][None] + (cols.anchors_full[i][p_c] - cols.anchors_small[i][co[mine]][None])
        late = ready_in[gi[mine][None], q_r, q_c] > ready_out[go[mine][None], p_r, p_c]
        for a, b in late.nonzero()[: limit - len(found)].tolist():
            k = int(mine[b])
            found.append(BlockViolation(path, (int(go[k]), int(p_r[a, 0]), int(p_c[a, 0])), slot.name, (int(gi[k]), int(q_r[a, b]), int(q_c[a, b]))))
        if len(found) >= limit:
            break
    return found


def prove_blocks(model: ARModel, full: ARModel, rank: torch.Tensor, modes=("train", "eval"), seed: int = 0, limit: int = 20,
                 select=None, budget: float = FULL_STREAM_BUDGET, full_layer=None) -> BlockProofs:
    """The block-level proof (see the module's docstring). ``model`` holds the weights (float64, e.g. the whole-model
    check's copy built for a small image), ``full`` the same spec built at its own size (the meta device will do),
    ``rank`` the ordering's ranks at that size. ``select(module) -> bool`` picks the blocks to prove (default: all,
    and the head). A block without a reach, or one that cannot run on a window, is proven on its full-size streams
    when that costs at most ``budget`` multiply-accumulates; ``full_layer(index)``, if given, supplies step ``index``'s
    block built for the full size (float64, the same weights) for that proof: the check's copy holds masks and tables
    built for the small image's streams (attention's mask, which may even broadcast over larger streams)."""
    prover = _Prover(rank, full.image.channels, modes, seed, limit, budget)
    slots_of_steps, head_in = step_slots(full)
    jobs = [(step.path, model.layers[step.index], slots, step.info, step.index) for step, slots in zip(full.steps, slots_of_steps)]
    jobs.append(("/head", _HeadCall(model.head), [_Slot(f"stream '{full.head_in}'", head_in, index=0)], _head_info(model, full, head_in), None))
    for path, layer, slots, out, index in jobs:
        if select is None or select(layer):
            sized = index is not None and _sized_to_streams(layer, full.layers[index])
            rebuild = (lambda index=index: full_layer(index)) if sized and full_layer is not None else None
            prover.prove(path, layer, slots, out, sized, rebuild)
    return prover.proofs


class _Prover:
    """Proves blocks one by one; blocks of the same type, configuration and shapes share their window's dependencies."""

    def __init__(self, rank, image_channels: int, modes, seed: int, limit: int, budget: float):
        self.rank, self.C, self.modes, self.seed, self.limit, self.budget = rank, image_channels, modes, seed, limit, budget
        self.generator = torch.Generator().manual_seed(seed)
        self.proofs = BlockProofs()
        self.memo: dict = {}

    def prove(self, path: str, layer, slots: list[_Slot], out: StreamInfo, sized: bool = False, rebuild=None) -> None:
        """``sized``: the block's buffers or parameters depend on its streams' size (attention masks, tables of
        positions), so the check's copy cannot run at full size: ``rebuild()`` gives the block built for it, and its
        cost counts every pair of positions."""
        maps = [s for s in slots if s.full.kind == "map"]
        reach = layer.reach() if callable(getattr(layer, "reach", None)) else None
        if Causal.FUTURE in (out.causal, *(s.full.causal for s in slots)):  # the builder's states already show a leak
            self.proofs.uncovered.append(path)
        elif out.kind != "map" or not maps:
            (self.proofs.uncovered if reach is None else self.proofs.proven).append(path)
        else:
            found = self._windowed(path, layer, slots, maps, out, reach) if reach is not None else None
            if found is None and (rebuild is not None or not sized) and _full_stream_cost(layer, maps, out, self.C, sized) <= self.budget:
                whole = Reach(*(max(out.height, *(s.full.height for s in maps)),) * 2, *(max(out.width, *(s.full.width for s in maps)),) * 2)
                # a size-specific block as built for the full-size streams (the small image's mask may even broadcast)
                block = rebuild() if sized else layer
                found = self._windowed(path, block, slots, maps, out, whole, whole=True, full_size=sized)
            if found is None:
                self.proofs.uncovered.append(path)
            elif found:
                self.proofs.violations += found[: self.limit]
            else:
                self.proofs.proven.append(path)

    def _windowed(self, path, layer, slots, maps, out, reach: Reach, whole: bool = False, full_size: bool = False) -> list[BlockViolation] | None:
        """The violations found through a window (the whole streams if ``whole``), or None if the block cannot run on it."""
        rows = _axis(out.height, [s.full.height for s in maps], reach.top, reach.bottom)
        cols = _axis(out.width, [s.full.width for s in maps], reach.left, reach.right)
        if rows is None or cols is None:
            return None
        out_index = _group_index(out, self.C)
        in_indices = [_group_index(s.full, self.C) for s in maps]
        in_groups = [int(ix.max()) + 1 for ix in in_indices]
        config = getattr(layer, "config", None)
        key = (type(layer), config.model_dump_json() if hasattr(config, "model_dump_json") else id(layer), whole, full_size,
               tuple((s.full.channels, rows.small_in[i], cols.small_in[i]) for i, s in enumerate(maps)),
               tuple(in_groups), int(out_index.max()) + 1, tuple(s.full.kind for s in slots))
        if key not in self.memo:
            deps = _window_dependencies(layer, slots, rows, cols, out_index, in_indices, in_groups, self.modes, self.seed, self.generator)
            # a block that reads beyond its stated reach anywhere at full size: the window does not show it, so proves nothing
            escaped = [] if whole or deps is None else _escapes(path, layer, slots, rows, cols, reach, out, self.modes, self.seed, self.generator, self.limit)
            self.memo[key] = (deps, escaped)
        deps, escaped = self.memo[key]
        if deps is None:
            return None
        if escaped:
            return [replace(v, path=path) for v in escaped]
        ready_out = ready_times(out, self.rank, self.C)
        found = []
        for i, (slot, dep) in enumerate(zip(maps, deps)):
            found += _violations(path, slot, dep, rows, cols, i, reach, ready_times(slot.full, self.rank, self.C), ready_out, self.limit)
        return found


def _sized_to_streams(small, full) -> bool:
    """Whether a block's parameters or buffers differ in shape between its copy for the check's small image and the
    one for the spec's own size (``full`` may be on the meta device)."""
    def shapes(module):
        return [tuple(t.shape) for t in (*module.parameters(), *module.buffers())]

    return shapes(small) != shapes(full)


def _full_stream_cost(layer, maps: list[_Slot], out: StreamInfo, image_channels: int, pairs: bool = False) -> float:
    """Rough multiply-accumulates of proving a block on its full-size streams: one pass per output (position, channel
    group) and per walked input (position, group, value), each about (parameters + channels) x output positions, plus,
    with ``pairs`` (a block whose tables follow its streams' size, such as attention), channels x every pair of
    positions."""
    weights = sum(p.numel() for p in layer.parameters()) + sum(s.full.channels for s in maps) + out.channels
    if pairs:
        weights += sum(s.full.channels for s in maps) * max(s.full.height * s.full.width for s in maps)
    groups = lambda info: len(stream_groups(info, image_channels))  # noqa: E731
    items = groups(out) * out.height * out.width + len(BLOCK_WALK) * sum(groups(s.full) * s.full.height * s.full.width for s in maps)
    return float(weights) * out.height * out.width * items


def _window_dependencies(layer, slots, rows: _Axis, cols: _Axis, out_index, in_indices, in_groups, modes, seed, generator):
    """The block's dependencies on its window in every mode (their union), or None if it cannot run on the window."""
    windows, labels = _inputs(slots, rows, cols, generator)
    call = _caller(layer, slots)
    try:
        with torch.no_grad():
            shape = tuple(call(windows, labels).shape)
    except (RuntimeError, ValueError, IndexError):
        return None
    if shape[1:] != (len(out_index), rows.small_out, cols.small_out):
        return None
    deps = None
    for mode in modes:
        layer.train(mode == "train")
        found = block_dependencies(call, windows, labels, out_index, int(out_index.max()) + 1, in_indices, in_groups, seed)
        deps = found if deps is None else [a | b for a, b in zip(deps, found)]
    return deps


def _escapes(path, layer, slots, rows: _Axis, cols: _Axis, reach: Reach, out: StreamInfo, modes, seed, generator, limit) -> list[BlockViolation]:
    """Whether the block reads beyond its stated reach anywhere in the full-size streams: at the four corners and the
    centre of the output (together they put every offset inside the image), every input outside the reach is set to
    each walk value at once (outputs compared bit for bit) and its gradient taken."""
    maps = [s for s in slots if s.full.kind == "map"]
    full = [torch.randn(1, s.full.channels, s.full.height, s.full.width, generator=generator, dtype=torch.float64) for s in maps]
    labels = {s.name: torch.randint(s.full.channels, (1,), generator=generator) for s in slots if s.full.kind != "map"}
    call = _caller(layer, slots)
    points = sorted({(0, 0), (0, out.width - 1), (out.height - 1, 0), (out.height - 1, out.width - 1), (out.height // 2, out.width // 2)})
    outside = []  # per point, per slot: [H_i, W_i] bool, the inputs the point's output must not read
    for r, c in points:
        masks = []
        for i, s in enumerate(maps):
            ar, ac = int(rows.anchors_full[i][r]), int(cols.anchors_full[i][c])
            m = torch.ones(s.full.height, s.full.width, dtype=torch.bool)
            m[max(0, ar - reach.top): ar + reach.bottom + 1, max(0, ac - reach.left): ac + reach.right + 1] = False
            masks.append(m)
        outside.append(masks)
    found = []

    run = _seeded(call, labels, seed)
    for mode in modes:
        layer.train(mode == "train")
        n = len(points) * len(BLOCK_WALK)
        with torch.no_grad():
            before = run([f.expand(n, *f.shape[1:]).clone() for f in full])
            changed = [f.expand(n, *f.shape[1:]).clone() for f in full]
            for j in range(n):
                point = j // len(BLOCK_WALK)
                for i, t in enumerate(changed):
                    t[j][:, outside[point][i]] = BLOCK_WALK[j % len(BLOCK_WALK)]
            after = run(changed)
        for j in range(n):
            r, c = points[j // len(BLOCK_WALK)]
            if not torch.equal(after[j, :, r, c], before[j, :, r, c]) and len(found) < limit:
                found.append(BlockViolation(path, (-1, r, c), "an input outside its stated reach", (-1, -1, -1), "reach"))
                break
        copies = [f.expand(len(points), *f.shape[1:]).clone().requires_grad_(True) for f in full]
        y = run(copies)
        if not y.requires_grad:
            continue
        rows_, cols_ = torch.tensor([p[0] for p in points]), torch.tensor([p[1] for p in points])
        picked = y[torch.arange(len(points)), :, rows_, cols_]  # [P, C_out]
        weights = torch.rand(picked.shape[1], generator=generator, dtype=picked.dtype).add(0.5)
        grads = torch.autograd.grad((picked * weights).sum(), copies, allow_unused=True)
        for i, grad in enumerate(grads):
            if grad is None:
                continue
            for j, (r, c) in enumerate(points):
                hits = (grad[j].abs().amax(0) != 0) & outside[j][i]
                if bool(hits.any()) and len(found) < limit:
                    q = hits.nonzero()[0].tolist()
                    found.append(BlockViolation(path, (-1, r, c), maps[i].name, (-1, *q), "reach"))
    return found


class _HeadCall(torch.nn.Module):
    """The head as a block: features -> its per-dimension parameters as a map [B, C' * K, H, W]."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def reach(self):
        return self.head.reach() if callable(getattr(self.head, "reach", None)) else None

    def forward(self, h):
        view = self.head.per_dimension(self.head(h))  # [B, C', K, H, W]
        return view.flatten(1, 2)


def _head_info(model: ARModel, full: ARModel, source: StreamInfo) -> StreamInfo:
    """The head's parameters as a stream: each sub-pixel's after the sub-pixels before it (``strict``), or each
    pixel's after the pixels before it for a joint head (``past``)."""
    image_channels = full.image.channels
    dims = 1 if full.head.joint else image_channels
    sample = torch.zeros(1, source.channels, 1, 1, dtype=next(model.head.parameters()).dtype)
    k = model.head.per_dimension(model.head(sample)).shape[2]
    state = Causal.PAST if full.head.joint else canonical(Causal.STRICT, image_channels)
    return StreamInfo(dims * k, full.image.height, full.image.width, state)
