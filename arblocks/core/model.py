"""The built model: runs the blocks over named streams and skip stacks, then the head."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from ..spec.errors import ArblocksError, did_you_mean
from ..spec.models import IMAGE_STREAM, ImageSpec, ModelSpec
from .ops import checks_values, grouped_cat
from .streams import Causal, StreamInfo, canonical


class Ref(NamedTuple):
    kind: str  # "stream" or "pop"
    name: str


@dataclass
class Step:
    index: int
    label: str
    path: str
    type: str
    inputs: list[Ref]
    aux: dict[str, list[Ref]] = field(default_factory=dict)
    out: str = "h"
    push: str | None = None
    #: shape and causal state of the output, and of each auxiliary field (its streams concatenated): the cached sampler's plan
    info: StreamInfo | None = None
    aux_info: dict[str, StreamInfo] = field(default_factory=dict)


@dataclass
class Row:
    """One line of the `arblocks build` table."""

    label: str
    type: str
    shape: str
    params: int
    depth: int = 0
    causal: str = ""


#: the function behind :meth:`ARModel.sample`, set by :func:`install_sampler`
_sampler: Callable | None = None


def install_sampler(sampler: Callable) -> None:
    """Make ``sampler(model, n, **options)`` the function behind :meth:`ARModel.sample` (and a staged model's stages).
    :mod:`arblocks.sampling` installs :func:`~arblocks.sampling.sample_images` when it is imported."""
    global _sampler
    _sampler = sampler


def levels_to_float(x: torch.Tensor, levels: int, dtype) -> torch.Tensor:
    """Integer levels in [0, levels) -> floats in [-1, 1] (what every block sees of the image)."""
    return x.to(dtype) * (2.0 / (levels - 1)) - 1.0


def float_to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The inverse of :func:`levels_to_float`: floats in [-1, 1] -> integer levels."""
    return ((x + 1) * (levels - 1) / 2).round().long().clamp(0, levels - 1)


class ARModel(nn.Module):
    """An autoregressive image model built from a spec.

    ``model(x, **conditioning)`` takes integer images ``[B, C, H, W]`` with values in ``[0, 2**bits)``
    and returns the head's distribution parameters. :meth:`nll` gives nats per image,
    :meth:`bits_per_dim` the mean bits per dimension.
    """

    def __init__(self, spec: ModelSpec, image: ImageSpec, layers, steps: list[Step], head, head_in: str, inputs: nn.ModuleDict, rows: list[Row]):
        super().__init__()
        self.transformations: list = []  # Distribution Augmentation's, set by the builder (arblocks.core.augmentation)
        self.spec = spec
        self.image = image
        self.layers = nn.ModuleList(layers)
        self.steps = steps
        self.head = head
        self.head_in = head_in
        self.inputs = inputs
        self.rows = rows

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def provided_inputs(self) -> list[str]:
        return [name for name, module in self.inputs.items() if module.provided]

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels -> floats in [-1, 1], after checking shape, dtype and range."""
        image = self.image
        expected = (image.channels, image.height, image.width)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected images of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise ValueError(f"expected integer levels (e.g. torch.uint8 or torch.long), got {x.dtype}")
        if checks_values(x) and x.numel():  # on the CPU in eager mode only: no device sync, no graph break (ops.checks_values)
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= image.levels:
                raise ValueError(f"levels must lie in [0, {image.levels - 1}] for a {image.bits}-bit image, got [{low}, {high}]")
        dtype = next((p.dtype for p in self.parameters()), torch.get_default_dtype())
        return levels_to_float(x, image.levels, dtype)

    def read_inputs(self, like: torch.Tensor, conditioning: dict) -> dict[str, torch.Tensor]:
        unknown = set(conditioning) - set(self.inputs)
        if unknown:
            raise ValueError(f"unknown input(s) {sorted(unknown)}; this model takes {self.provided_inputs or 'none'}")
        conditioning = dict(conditioning)
        for name in self.provided_inputs:  # inputs with a default (Distribution Augmentation's choices: the identity)
            if conditioning.get(name) is None and (value := self.inputs[name].default(like.shape[0], like.device)) is not None:
                conditioning[name] = value
        missing = [n for n in self.provided_inputs if conditioning.get(n) is None]
        if missing:
            raise ValueError(f"missing input(s) {missing}: pass them as keyword arguments, e.g. model(x, {missing[0]}=...)")
        return {name: module(like.shape[0], conditioning.get(name), like) for name, module in self.inputs.items()}

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        return self.forward_float(self.to_float(x), **conditioning)

    def features(self, xf: torch.Tensor, **conditioning) -> dict[str, torch.Tensor]:
        """Every stream after the body, from a float image in [-1, 1]."""

        def run(step: Step, args: list[torch.Tensor], aux: dict[str, list[torch.Tensor]]) -> torch.Tensor:
            return self.layers[step.index](*args, **{name: grouped_cat(parts, self.image.channels) for name, parts in aux.items()})

        return self.replay({IMAGE_STREAM: xf, **self.read_inputs(xf, conditioning)}, run)

    def replay(self, start: dict[str, Any], compute: Callable[[Step, list, dict[str, list]], Any]) -> dict[str, Any]:
        """Walk the steps over values of any kind (tensors, shapes, extents, sampler nodes): ``start`` holds the
        image's and the inputs' values, ``compute(step, inputs, aux)`` gives a step's output value from the values it
        reads (``aux``: each auxiliary field's values, one per stream it names). Skip stacks are pushed and popped as
        in the forward pass. Returns every stream's last value."""
        streams = dict(start)
        stacks: dict[str, list] = {}
        for step in self.steps:
            inputs = [self._read(ref, streams, stacks) for ref in step.inputs]
            aux = {name: [self._read(r, streams, stacks) for r in refs] for name, refs in step.aux.items()}
            value = compute(step, inputs, aux)
            streams[step.out] = value
            if step.push:
                stacks.setdefault(step.push, []).append(value)
        return streams

    def start_infos(self) -> dict[str, StreamInfo]:
        """What the builder knows of the streams a forward pass starts from: the image's and the inputs'."""
        image = self.image
        return {IMAGE_STREAM: StreamInfo(image.channels, image.height, image.width, canonical(Causal.INCLUSIVE, image.channels)),
                **{name: module.info for name, module in self.inputs.items()}}

    def forward_float(self, xf: torch.Tensor, **conditioning) -> torch.Tensor:
        return self.head(self.features(xf, **conditioning)[self.head_in])

    @staticmethod
    def _read(ref: Ref, streams, stacks):
        return stacks[ref.name].pop() if ref.kind == "pop" else streams[ref.name]

    # -- likelihood -----------------------------------------------------------------------------
    def nll(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        """Negative log-likelihood of each image in nats, shape [B] (float32)."""
        return self.head.nll(self(x, **conditioning), x)

    def bits_per_dim(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        """Mean negative log-likelihood in bits per dimension over the batch."""
        return self.nll(x, **conditioning).sum() / (x.shape[0] * self.image.dims * math.log(2))

    def sample(self, n: int, **options) -> torch.Tensor:
        """``n`` images drawn from the model: :func:`arblocks.sampling.sample_images` (``engine``, ``temperature``,
        ``conditioning``, ``known``/``known_mask``, ``generator``, ...). The sampling wing installs that function
        when it is imported (``import arblocks`` does); the core does not import it."""
        if _sampler is None:
            raise ArblocksError("no sampler is installed: import arblocks (or arblocks.sampling) to sample")
        return _sampler(self, n, **options)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    # -- the spec's blocks in Python ----------------------------------------------------------
    def block(self, where: str) -> nn.Module:
        """The module of the spec's block at a JSON path (``"/body/3"``, ``"/body/4[1]/body/0"`` for a repeat's second
        copy) or with a label (its ``name``). A container (``repeat``, ``residual``), or a block path that a repeat
        copies (without ``[k]``), gives the modules as an ``nn.ModuleList``. The paths and labels are those of the
        ``arblocks build`` table."""
        same = [self.layers[s.index] for s in self.steps if where in (s.path, s.label)]
        if len(same) == 1:
            return same[0]
        inside = same or [self.layers[s.index] for s in self.steps if s.path.startswith((where + "/", where + "[")) or s.label.startswith((where + "/", where + "["))]
        if inside:  # a container, or a block that a repeat copies (its path without the copy's [k])
            return nn.ModuleList(inside)
        known = [s.path for s in self.steps] + [s.label for s in self.steps if s.label != s.path]
        raise KeyError(f"no block at '{where}' (the paths and labels of `arblocks build`'s table){did_you_mean(where, known)}")

    def parameter_table(self) -> list[dict]:
        """The rows of the ``arblocks build`` table: each block's label, type, output shape, trainable parameters,
        nesting depth and causal state (containers count the blocks they hold)."""
        return [{"label": r.label, "type": r.type, "output": r.shape, "parameters": r.params, "depth": r.depth, "state": r.causal} for r in self.rows]
