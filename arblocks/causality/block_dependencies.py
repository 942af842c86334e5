"""A block's dependencies on its inputs, measured: float64 gradients of every output (position, channel group) and a
value walk (each input position's group set to each of :data:`BLOCK_WALK`, outputs compared bit for bit at equal
batch rows), in the maps a block reads (:class:`Slot`). The walk runs again in each low precision asked for (the
block's float32 copy, alone or under bf16/fp16 autocast, on the CPU, where kernels are deterministic: bit for bit), so
a block whose fast path for float32 or bf16 reads what its float64 path does not is caught at the block itself.
The block-level proofs at full size (:mod:`arblocks.causality.block_proof`, :mod:`arblocks.causality.mask_proof`)
compare them with what a block states."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
from torch.nn.utils import parametrize

from ..core.model import ARModel
from ..core.ops import channel_groups
from ..core.readiness import stream_groups
from ..core.streams import StreamInfo
from .precision import autocast_for

#: the values the block-level walk sets each input position's group to
BLOCK_WALK = (1.0, -1.0, 0.0)


@dataclass(frozen=True)
class BlockViolation:
    """Output (group, row, col) of the block at ``path`` depends on input ``slot`` at (group, row, col), at full size,
    although its stated causality forbids it (``kind`` "order"), beyond its stated reach ("reach") or outside its
    dependency mask ("mask"); or its dependency mask breaks the contract ("contract", said in ``detail``)."""

    path: str
    output: tuple[int, int, int]
    slot: str
    input: tuple[int, int, int]
    kind: str = "order"
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "contract":
            return f"{self.path}: {self.detail}"
        if self.kind == "mask":
            source = f"{self.slot} {_where(self.input)}" if self.input[1] >= 0 else "its inputs outside that row of the mask (all set to one value)"
            return f"{self.path}: output {_where(self.output)} reads {source}, outside the dependency mask the block states{self.detail}"
        if self.kind == "reach":
            source = f"{self.slot} {_where(self.input)}" if self.input[1] >= 0 else "its inputs outside that reach (all set to one value)"
            return f"{self.path}: output {_where(self.output)} reads {source}, beyond the reach the block states{self.detail}"
        return f"{self.path}: output {_where(self.output)} <- {self.slot} {_where(self.input)}, which the block's causal statement forbids"


def _where(at: tuple[int, int, int]) -> str:
    group, row, col = at
    return f"(row {row}, col {col}" + (f", channel group {group})" if group >= 0 else ")")


@dataclass
class Slot:
    """One map the block reads: a positional input or an auxiliary field."""

    name: str
    full: StreamInfo
    index: int | None = None  # position among the block's inputs; None for an auxiliary field
    aux: str | None = None


def step_slots(model: ARModel) -> tuple[list[list[Slot]], StreamInfo]:
    """For every step of a model built at full size, the maps it reads with their full-size stream infos; and the
    info of the stream the head reads."""
    result = []

    def record(step, inputs, aux):
        slots = [Slot(f"input {i} ({'pop ' if ref.kind == 'pop' else ''}{ref.name})", info, index=i) for i, (ref, info) in enumerate(zip(step.inputs, inputs))]
        slots += [Slot(f"field '{name}'", step.aux_info[name], aux=name) for name in aux]
        result.append(slots)
        return step.info

    streams = model.replay(model.start_infos(), record)
    return result, streams[model.head_in]


def group_index(info: StreamInfo, image_channels: int) -> torch.Tensor:
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

    run = seeded(call, extra, seed)
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


def seeded(call, labels: dict, seed: int):
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


def caller(layer, slots: list[Slot]):
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


class LowPrecisionFailure(Exception):
    """A block runs in float64 but not in a low precision the check asks for (its message says which and why)."""


@dataclass
class LowPrecisions:
    """The low precisions (:data:`~arblocks.causality.precision.PRECISIONS`) the block-level walk runs in besides
    float64, and the blocks' float32 copies, made once per block (holding the block keeps its id, the key, taken)."""

    names: tuple[str, ...] = ()
    _copies: dict = field(default_factory=dict)

    def copy_of(self, layer):
        """The float32 copy of ``layer`` (its float64 weights narrowed back, which is exact for a model built in float32)."""
        if id(layer) not in self._copies:
            self._copies[id(layer)] = (layer, copy.deepcopy(layer).float())
        return self._copies[id(layer)][1]

    @staticmethod
    @contextlib.contextmanager
    def uncached():
        """Run a copy without the proof's cache of parametrized (weight-normalized) weights: the cache is keyed by
        the id of a module, and a copy may take the id of a module freed while the cache is on, whose float64
        weights it would then be handed. Uncached, the copy computes its weights in float32 on every call, as the
        float32 model does in training."""
        enabled = getattr(parametrize, "_cache_enabled", 0)
        parametrize._cache_enabled = 0
        try:
            yield
        finally:
            parametrize._cache_enabled = enabled


def dependencies_in_modes(layer, slots: list[Slot], maps: list[torch.Tensor], labels: dict, out_index: torch.Tensor,
                          out_size: tuple[int, int], in_indices, in_groups, modes, seed: int,
                          low: LowPrecisions | None = None) -> list[torch.Tensor] | None:
    """:func:`block_dependencies` of ``layer`` on ``maps`` in every mode, and the value walk in each of ``low``'s
    precisions: their union. None if the block cannot run on them in float64 or gives an output other than
    ``out_index``'s channels at ``out_size``; :class:`LowPrecisionFailure` if it runs in float64 but not in one of
    ``low``'s precisions."""
    call = caller(layer, slots)
    try:
        with torch.no_grad():
            shape = tuple(call(maps, labels).shape)
    except (RuntimeError, ValueError, IndexError):
        return None
    if shape[1:] != (len(out_index), *out_size):
        return None
    deps = None
    for mode in modes:
        layer.train(mode == "train")
        found = block_dependencies(call, maps, labels, out_index, int(out_index.max()) + 1, in_indices, in_groups, seed)
        deps = found if deps is None else [a | b for a, b in zip(deps, found)]
    for precision in low.names if low is not None else ():
        found = _low_precision_walk(low.copy_of(layer), slots, maps, labels, out_index, in_indices, in_groups, modes, seed, precision)
        deps = [a | b.reshape(a.shape) for a, b in zip(deps, found)]
    return deps


def _low_precision_walk(low, slots, maps, labels, out_index, in_indices, in_groups, modes, seed, precision) -> list[torch.Tensor] | None:
    """Per map: [G_out * h * w, G_in, h_in, w_in] bool, the value walk of the block's float32 copy ``low`` on the maps
    narrowed to float32, under autocast for bf16/fp16, in every mode; :class:`LowPrecisionFailure` if it cannot run."""
    low_maps = [m.float() for m in maps]
    low_labels = {k: v.float() if v.is_floating_point() else v for k, v in labels.items()}
    run = seeded(caller(low, slots), low_labels, seed)
    result = [None] * len(maps)
    try:
        for mode in modes:
            low.train(mode == "train")
            with torch.no_grad(), autocast_for(precision, "cpu"), LowPrecisions.uncached():
                for i in range(len(maps)):
                    found = _walk(run, low_maps, i, in_indices[i], in_groups[i], out_index, int(out_index.max()) + 1)
                    result[i] = found if result[i] is None else result[i] | found
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        raise LowPrecisionFailure(f"cannot run in {precision} on the CPU ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    return result
