"""The cached sampling engine: at every generation step, only the positions that have just become computable.

Once per sampling call the engine makes a *plan*: one node per stream value of the model (the image, the inputs, every
block's output, every concatenation of auxiliary streams), each with a buffer of its full size, and for each node the
positions to compute at each step, from the stream's causal state (:mod:`arblocks.core.readiness`). Steps are the draws
of the sampler (one per sub-pixel for per-channel heads, one per pixel for joint heads; known pixels of a completion
are not steps). At a step, node by node in model order, each block computes its output at its positions
(:mod:`arblocks.core.incremental`: its own ``forward_at``, a window of its ordinary forward, or the whole map as a
fallback), the head runs at the drawn pixel, and the draw is written into the image.

The distribution parameters used at every step are kept, and after the last step they are compared with one full
forward pass over the finished images: they must be equal (to rounding), or sampling stops with an error. A block
whose incremental step is wrong cannot produce silently wrong samples.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.utils import parametrize

from ..core.incremental import Region, compute_at, incremental_kind
from ..core.model import ARModel
from ..core.ops import grouped_cat
from ..core.readiness import ready_times, stream_groups
from ..core.streams import Causal, StreamInfo
from .draws import Event, Sampler, SamplingError, draw_at, events_of, start_images  # noqa: F401 - re-exported


@dataclass
class Node:
    name: str
    info: StreamInfo
    compute: Any = None  # callable(region) -> [B, C, n]; None for the image and the inputs
    layer: Any = None
    kind: str = "input"  # input, concat, step, window, full
    schedule: list = field(default_factory=list)  # per event: Region or None
    buffer: torch.Tensor | None = None


def schedules(infos: list[StreamInfo], rank: torch.Tensor, channels: int, times: list[int], device) -> list[list[Region | None]]:
    """For each stream, per event, the positions that become computable at it (in (previous event's time, its time])."""
    event_times = torch.tensor(times, dtype=torch.long)
    by_key: dict = {}
    out = []
    for info in infos:
        key = (info.causal, info.channels if info.causal in (Causal.STRICT, Causal.INCLUSIVE) else 0, info.height, info.width)
        if key not in by_key:
            grouped = channels > 1 and len(stream_groups(info, channels)) == channels
            by_key[key] = _schedule(ready_times(info, rank, channels), event_times, device, grouped)
        out.append(by_key[key])
    return out


def _schedule(ready: torch.Tensor, event_times: torch.Tensor, device, grouped: bool) -> list[Region | None]:
    """Per event, the region of positions with some channel group ready in (previous event, event]; with ``grouped``
    (a stream whose channel groups become final at different times) and one group for the whole region, that group
    (``Region.groups``): only its channels are written, the others are final already or not yet."""
    groups, h, w = ready.shape
    event = torch.searchsorted(event_times, ready.flatten(), side="left")  # first event at or after the ready time
    position = torch.arange(h * w).repeat(groups)
    group = torch.arange(groups).repeat_interleave(h * w)
    keep = event < len(event_times)
    event, position, group = event[keep], position[keep], group[keep]
    key = torch.unique(event * (h * w) + position)  # sorted by event, then position; each once per event
    counts = torch.bincount(key // (h * w), minlength=len(event_times)).tolist()
    # the one group each event readies, or -1 when it readies several
    low = torch.full((len(event_times),), groups, dtype=torch.long).scatter_reduce(0, event, group, "amin")
    high = torch.full((len(event_times),), -1, dtype=torch.long).scatter_reduce(0, event, group, "amax")
    single = torch.where(low == high, low, -1).tolist()
    regions: list[Region | None] = []
    for index, chunk in enumerate(torch.split(key % (h * w), counts)):
        if len(chunk) == 0:
            regions.append(None)
            continue
        region = Region.of(chunk // w, chunk % w, h, w)
        if grouped and single[index] >= 0:
            region.groups = (single[index], groups)
        regions.append(region.to(device))
    return regions


class CachedSampler(Sampler):
    """Draws images with one cached forward step per draw. See the module docstring."""

    last_run: dict = {}

    # -- plan -----------------------------------------------------------------------------------
    def nodes(self) -> tuple[list[Node], dict[str, Node], list[tuple[Node, list[Node], dict[str, Node]]]]:
        """The graph of the model's stream values: nodes in computation order, and each block's sources."""
        model = self.model
        start = {name: Node(name, info) for name, info in model.start_infos().items()}
        nodes = list(start.values())
        wiring = []

        def plan(step, inputs, aux_parts):
            aux = {}
            for key, parts in aux_parts.items():
                if len(parts) == 1:
                    aux[key] = parts[0]
                else:
                    aux[key] = Node(f"{step.path}/{key}", step.aux_info[key], kind="concat")
                    aux[key].compute = self._concat(parts)
                    nodes.append(aux[key])
            layer = model.layers[step.index]
            node = Node(step.label, step.info, layer=layer, kind=incremental_kind(layer))
            nodes.append(node)
            wiring.append((node, inputs, aux))
            return node

        streams = model.replay(start, plan)
        return nodes, streams, wiring

    def _concat(self, parts: list[Node]):
        groups = self.model.image.channels

        def compute(region: Region):
            strips = [region.strip(p.buffer) for p in parts]
            return grouped_cat(strips, groups)[:, :, 0]

        return compute

    @staticmethod
    def _layer(node: Node, inputs: list[Node], aux: dict[str, Node], cache):
        def compute(region: Region):
            return compute_at(node.layer, node.kind, region, cache, [n.buffer for n in inputs], {k: n.buffer for k, n in aux.items()})

        return compute

    # -- sampling -------------------------------------------------------------------------------
    def plan(self, x: torch.Tensor, conditioning: dict, events: list[Event]) -> tuple[list[Node], Node, list]:
        """The nodes to compute (with their buffers and schedules), the head's input and the blocks' caches."""
        model, n = self.model, x.shape[0]
        device, dtype = x.device, next(model.parameters()).dtype
        nodes, streams, wiring = self.nodes()
        nodes[0].buffer = model.to_float(x)  # the image, as floats in [-1, 1]
        for name, value in model.read_inputs(nodes[0].buffer, conditioning).items():
            streams[name].buffer = value.contiguous()
        caches = [node.layer.new_cache(n, device, dtype) for node, _, _ in wiring]
        for (node, inputs, aux), cache in zip(wiring, caches):
            node.compute = self._layer(node, inputs, aux, cache)
        computed = [node for node in nodes if node.compute is not None]
        plans = schedules([node.info for node in computed], self.rank, model.image.channels, [e.time for e in events], device)
        for node, plan in zip(computed, plans):
            node.buffer = torch.zeros(n, *node.info.shape, device=device, dtype=dtype)
            node.schedule = plan
        return [nodes[0], *computed], streams[model.head_in], caches

    @torch.no_grad()
    def sample(self, n, temperature=1.0, conditioning=None, known=None, known_mask=None, generator=None, progress=False, verify=True):
        """Like :meth:`arblocks.sampling.sample.NaiveSampler.sample`; ``verify`` compares every draw's parameters with a full
        forward pass at the end. ``last_run`` then holds the fallback blocks, the cache's size and the difference."""
        model, conditioning = self.model, conditioning or {}
        x = start_images(n, model.image, known, next(model.parameters()).device)
        events, iterator = self.draws(known_mask, progress)
        (image, *computed), head_in, caches = self.plan(x, conditioning, events)
        record = Record(model, x) if verify else None
        recomputed: dict[str, int] = defaultdict(int)
        with parametrize.cached():  # weight-normalized weights computed once, not at every step
            for index, event in enumerate(iterator):
                for node in computed:
                    region = node.schedule[index]
                    if region is not None:
                        region.put(node.buffer, node.compute(region), only_groups=True)
                        recomputed[node.name] += node.kind == "full" and not region.full
                params = model.head(head_in.buffer[:, :, event.row : event.row + 1, event.col : event.col + 1])
                draw_at(model, params, x, image.buffer, event, index, generator, temperature)
                if record is not None:
                    record.add(params, event)
            if record is not None:
                record.verify(conditioning)
        streams = sum(tensor_bytes(node.buffer) for node in computed)
        self.last_run = {"events": len(events), "fallback": {k: v for k, v in recomputed.items() if v}, "nodes": len(computed),
                         "max_difference": record.max_difference if record is not None else None,
                         "stream_bytes": streams, "cache_bytes": streams + sum(tensor_bytes(c) for c in caches)}
        return x

    def fallback_blocks(self) -> list[str]:
        """Blocks that have neither an incremental step nor a reach (recomputed over the whole map at each step)."""
        return [f"{step.label} ({step.type})" for step in self.model.steps if incremental_kind(self.model.layers[step.index]) == "full"]


def tensor_bytes(value) -> int:
    """Bytes held by a tensor, or by the tensors of a dict, list or tuple (a block's cache)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        value = list(value.values())
    return sum(tensor_bytes(v) for v in value) if isinstance(value, (list, tuple)) else 0


class Record:
    """The parameters each draw used, to compare with one full forward pass over the finished images."""

    def __init__(self, model: ARModel, x: torch.Tensor):
        self.model, self.x = model, x
        self.params: torch.Tensor | None = None
        self.used: torch.Tensor | None = None

    def add(self, params: torch.Tensor, event: Event) -> None:
        per_dim = self.model.head.per_dimension(params)[..., 0, 0]  # [B, C', K]
        if self.params is None:
            b, c, k = per_dim.shape
            h, w = self.x.shape[2:]
            self.params = per_dim.new_zeros(b, c, k, h, w)
            self.used = torch.zeros(c, h, w, dtype=torch.bool, device=per_dim.device)
        channels = slice(None) if event.channel is None or per_dim.shape[1] == 1 else slice(event.channel, event.channel + 1)
        self.params[:, channels, :, event.row, event.col] = per_dim[:, channels]
        self.used[channels, event.row, event.col] = True

    def difference(self, conditioning: dict) -> tuple[float, float]:
        """(max abs difference, max abs value) between the recorded and the full forward's parameters."""
        if self.params is None:
            return 0.0, 0.0
        difference = scale = 0.0
        for start in range(0, len(self.x), VERIFY_BATCH):  # a bounded forward pass at a time, for any number of images
            part = slice(start, start + VERIFY_BATCH)
            full = self.model.head.per_dimension(self.model(self.x[part], **{k: v[part] if v.shape[:1] == self.x.shape[:1] else v for k, v in conditioning.items()}))
            used = self.used[None, :, None].expand_as(full)
            difference = max(difference, float((full - self.params[part])[used].abs().max()))
            scale = max(scale, float(full[used].abs().max()))
        return difference, scale

    def verify(self, conditioning: dict) -> None:
        diff, scale = self.difference(conditioning)
        self.max_difference = diff
        tolerance = TOLERANCE.get(self.params.dtype if self.params is not None else torch.float32, 5e-2) * max(1.0, scale)
        if diff > tolerance:
            raise SamplingError(
                f"cached sampling disagrees with the model: the distribution parameters at some draw differ from a full forward pass "
                f"by {diff:.3g} (tolerance {tolerance:.3g}): a block's incremental step (forward_at or reach) is wrong, or the model "
                "is not causal (`arblocks check` tells which). Sample with --engine naive, and report the block."
            )


#: images per forward pass of the end-of-call verification
VERIFY_BATCH = 64

#: largest difference allowed between a cached step's parameters and the full forward's, relative to their size
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-3}
