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
   outputs compared bit for bit at equal batch rows), in training and evaluation mode; the walk runs again in each low
   precision asked for (the block's float32 copy, alone or under bf16 autocast, on the CPU, bit for bit).
2. Every full-size output position is mapped to the window's position with the same border case, its dependencies
   shifted by the offset between the two, and the inequality is tested against the full-size ready times, so any
   ordering works. A dependency outside the block's stated reach is reported too: the mapping relies on it.

Blocks without a reach (attention, embeddings of positions, position-dependent plugin blocks) are proven on their
whole full-size streams when that is affordable (attention at a U-Net's 8x8 level), the block built for the full size
when the check's copy holds masks for the small image; else through their dependency masks when they state one
(:mod:`arblocks.causality.mask_proof`: PixelSNAIL's attention over 32x32, the sequence models' blocks); the others
are checked only inside the model, at the size of the whole-model check, and the report names them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch

from ..core.builder import build_model
from ..core.incremental import Reach
from ..core.model import ARModel
from ..core.readiness import ready_times, stream_groups
from ..core.registry import Registry
from ..core.streams import Causal, StreamInfo, canonical
from .block_dependencies import BLOCK_WALK, BlockViolation, LowPrecisionFailure, LowPrecisions, Slot, caller, dependencies_in_modes, group_index, seeded, step_slots
from .mask_proof import prove_by_mask, states_mask
from .precision import autocast_for
from .size_rule import smallest_covering

#: multiply-accumulates a block without a reach may cost to be proven on its full-size streams: about a second for
#: `build`'s proof of plugin blocks; `arblocks check` allows ten times as much (CHECK_FULL_STREAM_BUDGET)
FULL_STREAM_BUDGET = 1e10
CHECK_FULL_STREAM_BUDGET = 1e11
#: what a pair of positions costs attention in float64 on the CPU, per channel, in multiply-accumulates of a
#: convolution: the masked scores, their softmax and the batch's score matrices in memory (measured: a 4-channel
#: attention block over 24x24 took 200 s to prove on its full-size streams, estimated at 9e9 without this factor)
PAIR_COST = 20


@dataclass
class BlockProofs:
    """What the block-level proof covered: ``proven`` block paths, ``uncovered`` ones (no reach) and violations;
    ``precisions``: the low precisions the blocks' value walk also ran in."""

    precisions: tuple[str, ...] = ()
    proven: list[str] = field(default_factory=list)
    by_mask: list[str] = field(default_factory=list)  # the proven blocks proven through their dependency masks
    uncovered: list[str] = field(default_factory=list)
    violations: list[BlockViolation] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.uncovered and not self.violations


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


def _inputs(slots: list[Slot], rows: _Axis, cols: _Axis, generator: torch.Generator) -> tuple[list[torch.Tensor], dict]:
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


def _violations(path: str, slot: Slot, dep: torch.Tensor, rows: _Axis, cols: _Axis, i: int, reach: Reach,
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
                 select=None, budget: float = FULL_STREAM_BUDGET, full_layer=None, precisions: tuple[str, ...] = ()) -> BlockProofs:
    """The block-level proof (see the module's docstring). ``model`` holds the weights (float64, e.g. the whole-model
    check's copy built for a small image), ``full`` the same spec built at its own size (the meta device will do),
    ``rank`` the ordering's ranks at that size. ``select(module) -> bool`` picks the blocks to prove (default: all,
    and the head). A block without a reach, or one that cannot run on a window, is proven on its full-size streams
    when that costs at most ``budget`` multiply-accumulates; ``full_layer(index)``, if given, supplies step ``index``'s
    block built for the full size (float64, the same weights) for that proof: the check's copy holds masks and tables
    built for the small image's streams (attention's mask, which may even broadcast over larger streams). A block that
    costs more and states a dependency mask is proven through it (:mod:`arblocks.causality.mask_proof`; this needs
    ``full_layer`` too). ``precisions``: the low precisions (float32, bf16, fp16) the blocks' value walk also runs in."""
    prover = _Prover(rank, full.image.channels, modes, seed, limit, budget, LowPrecisions(tuple(precisions)))
    slots_of_steps, head_in = step_slots(full)
    small_slots, _ = step_slots(model)
    for step, small_step, slots, mine in zip(full.steps, model.steps, slots_of_steps, small_slots):
        layer = model.layers[step.index]
        if select is None or select(layer):
            at_full = (lambda index=step.index: full_layer(index)) if full_layer is not None else None
            prover.prove(step.path, layer, slots, step.info, _sized_to_streams(layer, full.layers[step.index]), at_full, (mine, small_step.info))
    head = _HeadCall(model.head)
    if select is None or select(head):
        prover.prove("/head", head, [Slot(f"stream '{full.head_in}'", head_in, index=0)], _head_info(model, full, head_in))
    return prover.proofs


def full_size_layers(model: ARModel, full: ARModel, registry: Registry | None = None):
    """``index -> block``: step ``index``'s block of the spec at its own size in float64 on the CPU (once, when first
    asked: a copy of ``full`` when it is on the CPU, else a build, so that a model on the meta device or an accelerator
    is neither copied there nor materialized), holding the checked copy's weights wherever their shapes agree."""
    built: list[ARModel] = []

    def layer(index: int):
        if not built:
            on_cpu = all(t.device.type == "cpu" for t in [*full.parameters(), *full.buffers()])
            built.append(copy.deepcopy(full).double() if on_cpu else build_model(full.spec, registry, full.image, static_causality=False).double())
        block, small = built[0].layers[index], model.layers[index]
        mine = block.state_dict()
        block.load_state_dict({k: v for k, v in small.state_dict().items() if k in mine and mine[k].shape == v.shape}, strict=False)
        return block

    return layer


class _Prover:
    """Proves blocks one by one; blocks of the same type, configuration and shapes share their window's dependencies."""

    def __init__(self, rank, image_channels: int, modes, seed: int, limit: int, budget: float, low: LowPrecisions):
        self.rank, self.C, self.modes, self.seed, self.limit, self.budget, self.low = rank, image_channels, modes, seed, limit, budget, low
        self.generator = torch.Generator().manual_seed(seed)
        self.proofs = BlockProofs(low.names)
        self.memo: dict = {}

    def prove(self, path: str, layer, slots: list[Slot], out: StreamInfo, sized: bool = False, at_full=None, small=None) -> None:
        """``sized``: the block's buffers or parameters depend on its streams' size (attention masks, tables of
        positions), so the check's copy cannot run at full size, and its cost counts every pair of positions.
        ``at_full()`` gives the block built for the full size; ``small`` is (slots, output info) of the check's copy,
        for the proof through a dependency mask."""
        try:
            self._prove(path, layer, slots, out, sized, at_full, small)
        except LowPrecisionFailure as failure:  # clean in float64 perhaps, but not proven as it runs
            self.proofs.violations.append(BlockViolation(path, (-1, -1, -1), "", (-1, -1, -1), "contract", str(failure)))

    def _prove(self, path: str, layer, slots: list[Slot], out: StreamInfo, sized: bool, at_full, small) -> None:
        maps = [s for s in slots if s.full.kind == "map"]
        reach = layer.reach() if callable(getattr(layer, "reach", None)) else None
        if Causal.FUTURE in (out.causal, *(s.full.causal for s in slots)):  # the builder's states already show a leak
            self.proofs.uncovered.append(path)
        elif out.kind != "map" or not maps:
            (self.proofs.uncovered if reach is None else self.proofs.proven).append(path)
        else:
            found = self._windowed(path, layer, slots, maps, out, reach) if reach is not None else None
            if found is None and (at_full is not None or not sized) and _full_stream_cost(layer, maps, out, self.C, sized) <= self.budget:
                whole = Reach(*(max(out.height, *(s.full.height for s in maps)),) * 2, *(max(out.width, *(s.full.width for s in maps)),) * 2)
                # a size-specific block as built for the full-size streams (the small image's mask may even broadcast)
                block = at_full() if sized else layer
                found = self._windowed(path, block, slots, maps, out, whole, whole=True, full_size=sized)
            if found is None and at_full is not None and small is not None and states_mask(layer):
                found = self._by_mask(path, layer, small, at_full, slots, out)
                if found == []:
                    self.proofs.by_mask.append(path)
            if found is None:
                self.proofs.uncovered.append(path)
            elif found:
                self.proofs.violations += found[: self.limit]
            else:
                self.proofs.proven.append(path)

    def _by_mask(self, path, layer, small, at_full, slots, out) -> list[BlockViolation] | None:
        """The violations the proof through the block's dependency mask finds, or None if it cannot run."""
        small_slots, small_out = small
        config = getattr(layer, "config", None)
        shapes = lambda slots, out: (out.shape, out.causal, tuple((s.full.shape, s.full.causal) for s in slots))  # noqa: E731
        key = ("mask", type(layer), config.model_dump_json() if hasattr(config, "model_dump_json") else id(layer),
               shapes(small_slots, small_out), shapes(slots, out))
        if key not in self.memo:
            self.memo[key] = prove_by_mask(path, layer, small_slots, small_out, at_full(), slots, out, self.rank, self.C,
                                           self.modes, self.seed, self.generator, self.limit, self.low)
        found = self.memo[key]
        return None if found is None else [replace(v, path=path) for v in found]

    def _windowed(self, path, layer, slots, maps, out, reach: Reach, whole: bool = False, full_size: bool = False) -> list[BlockViolation] | None:
        """The violations found through a window (the whole streams if ``whole``), or None if the block cannot run on it."""
        rows = _axis(out.height, [s.full.height for s in maps], reach.top, reach.bottom)
        cols = _axis(out.width, [s.full.width for s in maps], reach.left, reach.right)
        if rows is None or cols is None:
            return None
        out_index = group_index(out, self.C)
        in_indices = [group_index(s.full, self.C) for s in maps]
        in_groups = [int(ix.max()) + 1 for ix in in_indices]
        config = getattr(layer, "config", None)
        key = (type(layer), config.model_dump_json() if hasattr(config, "model_dump_json") else id(layer), whole, full_size,
               tuple((s.full.channels, rows.small_in[i], cols.small_in[i]) for i, s in enumerate(maps)),
               tuple(in_groups), int(out_index.max()) + 1, tuple(s.full.kind for s in slots))
        if key not in self.memo:
            deps = _window_dependencies(layer, slots, rows, cols, out_index, in_indices, in_groups, self.modes, self.seed, self.generator, self.low)
            # a block that reads beyond its stated reach anywhere at full size: the window does not show it, so proves nothing
            escaped = [] if whole or deps is None else _escapes(path, layer, slots, rows, cols, reach, out, self.modes, self.seed, self.generator,
                                                                self.limit, self.low)
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


def _full_stream_cost(layer, maps: list[Slot], out: StreamInfo, image_channels: int, pairs: bool = False) -> float:
    """Rough multiply-accumulates of proving a block on its full-size streams: one pass per output (position, channel
    group) and per walked input (position, group, value), each about (parameters + channels) x output positions, plus,
    with ``pairs`` (a block whose tables follow its streams' size, such as attention), :data:`PAIR_COST` x channels
    x every pair of positions."""
    weights = sum(p.numel() for p in layer.parameters()) + sum(s.full.channels for s in maps) + out.channels
    if pairs:
        weights += PAIR_COST * sum(s.full.channels for s in maps) * max(s.full.height * s.full.width for s in maps)
    groups = lambda info: len(stream_groups(info, image_channels))  # noqa: E731
    items = groups(out) * out.height * out.width + len(BLOCK_WALK) * sum(groups(s.full) * s.full.height * s.full.width for s in maps)
    return float(weights) * out.height * out.width * items


def _window_dependencies(layer, slots, rows: _Axis, cols: _Axis, out_index, in_indices, in_groups, modes, seed, generator, low):
    """The block's dependencies on its window in every mode and precision (their union), or None if it cannot run on the window."""
    windows, labels = _inputs(slots, rows, cols, generator)
    return dependencies_in_modes(layer, slots, windows, labels, out_index, (rows.small_out, cols.small_out), in_indices, in_groups, modes, seed, low)


def _escapes(path, layer, slots, rows: _Axis, cols: _Axis, reach: Reach, out: StreamInfo, modes, seed, generator, limit,
             low: LowPrecisions | None = None) -> list[BlockViolation]:
    """Whether the block reads beyond its stated reach anywhere in the full-size streams: at the four corners and the
    centre of the output (together they put every offset inside the image), every input outside the reach is set to
    each walk value at once (outputs compared bit for bit) and its gradient taken; the walk again in each of ``low``'s
    precisions (the block's float32 copy on the inputs narrowed to float32, under autocast for bf16/fp16)."""
    maps = [s for s in slots if s.full.kind == "map"]
    full = [torch.randn(1, s.full.channels, s.full.height, s.full.width, generator=generator, dtype=torch.float64) for s in maps]
    labels = {s.name: torch.randint(s.full.channels, (1,), generator=generator) for s in slots if s.full.kind != "map"}
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
    run = seeded(caller(layer, slots), labels, seed)
    for mode in modes:
        layer.train(mode == "train")
        found += _escaped_values(path, run, full, points, outside, limit - len(found))
        found += _escaped_gradients(path, run, full, maps, points, outside, generator, limit - len(found))
    for precision in low.names if low is not None else ():
        narrow = low.copy_of(layer)
        run = seeded(caller(narrow, slots), {k: v.float() if v.is_floating_point() else v for k, v in labels.items()}, seed)
        for mode in modes:
            narrow.train(mode == "train")
            with autocast_for(precision, "cpu"), LowPrecisions.uncached():
                try:
                    found += _escaped_values(path, run, [f.float() for f in full], points, outside, limit - len(found), f" in {precision}")
                except (RuntimeError, ValueError, IndexError, TypeError) as error:
                    raise LowPrecisionFailure(f"cannot run in {precision} on the CPU ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    return found[:limit]


def _escaped_values(path, run, full, points, outside, limit: int, where: str = "") -> list[BlockViolation]:
    """The walk part of :func:`_escapes`: one batch row per (point, walk value), compared with the unchanged batch."""
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
        if not torch.equal(after[j, :, r, c], before[j, :, r, c]) and limit > 0:
            return [BlockViolation(path, (-1, r, c), "an input outside its stated reach", (-1, -1, -1), "reach", where)]
    return []


def _escaped_gradients(path, run, full, maps, points, outside, generator, limit: int) -> list[BlockViolation]:
    """The gradient part of :func:`_escapes`: each point's outputs (randomly weighted) differentiated at once."""
    copies = [f.expand(len(points), *f.shape[1:]).clone().requires_grad_(True) for f in full]
    y = run(copies)
    if not y.requires_grad:
        return []
    rows_, cols_ = torch.tensor([p[0] for p in points]), torch.tensor([p[1] for p in points])
    picked = y[torch.arange(len(points)), :, rows_, cols_]  # [P, C_out]
    weights = torch.rand(picked.shape[1], generator=generator, dtype=picked.dtype).add(0.5)
    grads = torch.autograd.grad((picked * weights).sum(), copies, allow_unused=True)
    found = []
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
