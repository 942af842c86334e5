"""Spec -> ``nn.Module``.

The builder walks the body in order, keeping what it knows about every stream (shape and causal state,
see :mod:`arblocks.core.streams`) and every skip stack. Each block is built from the shapes of the streams it
reads; its causal statement gives the state of the stream it writes. Every problem (unknown stream, pop
from an empty stack, shape mismatch, a wiring that cannot be causal, a head that does not fit the image)
is collected with its JSON path and raised as one :class:`~arblocks.spec.errors.SpecError`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..spec.errors import BlockError, Problem, SpecError, SpecWarning, did_you_mean
from ..spec.limits import max_parameters
from ..spec.models import IMAGE_STREAM, STREAM_MARK, BlockConfig, ImageSpec, ModelSpec, PopRef
from .augmentation import AugmentationChoices
from .block import Block, BuildContext
from .incremental import Reach, Region, compute_at, incremental_kind
from .model import ARModel, Ref, Row, Step
from .ops import keeps_groups, ungrouped
from .ordering import ordering_of
from .plugins import get_registry
from .readiness import ready_times
from .registry import Registry
from .streams import Causal, StreamInfo, canonical, join


class _Failed(Exception):
    """A problem was recorded; the current block is skipped."""


def rows_above_come_first(ordering, image: ImageSpec) -> bool:
    """Whether the ordering generates every pixel of the rows above a pixel before it (raster order does), which the
    chain of states assumes when it puts ``above`` before ``past``: the frontier of 'above' within that of 'past'."""
    with torch.device("cpu"):  # also in a meta build: the ranks are needed as values
        rank = ordering.rank(image.height, image.width)
        shape = dict(channels=1, height=image.height, width=image.width)
        above = ready_times(StreamInfo(**shape, causal=Causal.ABOVE), rank, 1)
        return bool((above <= ready_times(StreamInfo(**shape, causal=Causal.PAST), rank, 1)).all())


class Chain(nn.Module):
    """Blocks applied one after another to a single stream (the body of a container block)."""

    def __init__(self, layers: list[Block], paths: list[str], input_info: StreamInfo, rows: list[Row]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.paths = paths
        self.rows = rows
        self.output_info = layers[-1].output_info if layers else input_info

    def forward(self, h):
        for layer in self.layers:
            h = layer(h)
        return h

    def reach(self):
        """The reach of the whole chain when every layer is local (see arblocks.core.incremental), else None."""
        total = Reach()
        for layer in self.layers:
            reach = layer.reach()
            same_size = (layer.output_info.height, layer.output_info.width) == (self.output_info.height, self.output_info.width)
            if reach is None or not same_size:
                return None
            total = total + reach
        return total

    # -- cached sampling: a chain with a non-local layer (running means, attention) steps layer by layer ----------
    def steps_in_place(self) -> bool:
        """Whether every layer keeps the chain's input size, so that one region of positions serves them all."""
        return all((layer.output_info.height, layer.output_info.width) == (self.output_info.height, self.output_info.width) for layer in self.layers)

    def new_cache(self, batch, device, dtype):
        return {"buffers": {}, "layers": [layer.new_cache(batch, device, dtype) for layer in self.layers]}

    def forward_at(self, region: Region, cache, h: torch.Tensor) -> torch.Tensor:
        """The chain's output [B, C, n] at the region. Each layer's output is kept in a full-size buffer (written at the
        regions computed so far, as the sampler writes streams), which the next layer reads like any stream."""
        for i, layer in enumerate(self.layers):
            out = compute_at(layer, incremental_kind(layer), region, cache["layers"][i], [h], {})
            if i + 1 < len(self.layers):
                if i not in cache["buffers"]:
                    cache["buffers"][i] = h.new_zeros(h.shape[0], out.shape[1], h.shape[2], h.shape[3])
                region.put(cache["buffers"][i], out, only_groups=True)
                h = cache["buffers"][i]
        return out

    def causality(self, state: Causal) -> Causal:
        for layer, path in zip(self.layers, self.paths):
            try:
                state = canonical(layer.causality([state], {}), layer.image.channels)
            except BlockError as error:
                raise ChainCausalityError(path, error) from error
        return state


class ChainCausalityError(BlockError):
    def __init__(self, path: str, error: BlockError):
        super().__init__(error.message, error.field, error.type)
        self.path = path


@dataclass
class _State:
    streams: dict[str, StreamInfo | None]
    stacks: dict[str, list[tuple[StreamInfo | None, str]]] = field(default_factory=dict)
    last: str = IMAGE_STREAM


class Builder:
    def __init__(self, spec: ModelSpec, registry: Registry | None = None, image: ImageSpec | None = None, static_causality: bool = True):
        self.spec = spec
        self.static_causality = static_causality
        self.registry = registry or get_registry()
        self.image = image or spec.image

        self.ordering = ordering_of(spec, self.registry)
        self.rank = self.ordering.rank(self.image.height, self.image.width)
        self.rows_above_first = rows_above_come_first(self.ordering, self.image)
        self.shared: dict = {}  # modules that blocks share (attention masks), see BuildContext.shared
        self.problems: list[Problem] = []
        self.mixed_at: dict[str, str] = {}  # stream -> the block that first mixed its sub-pixel channel groups (for messages)
        self.layers: list[nn.Module] = []
        self.steps: list[Step] = []
        self.rows: list[Row] = []
        self.parameters = 0  # built so far, against the limit
        self.max_parameters = max_parameters()

    # -- problems -------------------------------------------------------------------------------
    def problem(self, path: str, kind: str, message: str) -> None:
        p = Problem(path, kind, message)
        if p not in self.problems:  # a repeated block reports once
            self.problems.append(p)

    def fail(self, path: str, kind: str, message: str):
        self.problem(path, kind, message)
        raise _Failed

    def not_causal(self, path: str, message: str, state: Causal = Causal.FUTURE) -> Causal:
        """A wiring that cannot be causal: a problem, unless static checks are off (to let the harness show the leak)."""
        if self.static_causality:
            self.fail(path, "not_causal", message)
        return state

    # -- the whole model ------------------------------------------------------------------------
    def build(self) -> ARModel:
        image = self.image
        x_info = StreamInfo(image.channels, image.height, image.width, canonical(Causal.INCLUSIVE, image.channels))
        state = _State(streams={IMAGE_STREAM: x_info})
        input_modules = nn.ModuleDict()
        for name, config in self.spec.inputs.items():
            if name == IMAGE_STREAM:
                self.problem(f"/inputs/{name}", "reserved_name", f"'{IMAGE_STREAM}' is the image stream; name the input otherwise")
                continue
            try:
                module = self.registry.inputs[config.type].cls(config, image)
            except BlockError as error:
                self.problem(f"/inputs/{name}" + (f"/{error.field}" if error.field else ""), "input_does_not_fit", error.message)
                continue
            if hasattr(input_modules, name):  # torch keeps module names apart from nn.Module's attributes (half, cuda, ...)
                self.problem(f"/inputs/{name}", "reserved_name", f"'{name}' is a name PyTorch reserves for a module's methods; name the input otherwise")
                continue
            input_modules[name] = module
            state.streams[name] = module.info
        transformations = self.build_augmentation(state, input_modules)
        self.readonly = set(state.streams)

        self.walk(self.spec.body, "/body", "", state)
        for stack, entries in state.stacks.items():
            if entries:
                self.problem(entries[-1][1] + "/push", "unpopped", f"skip stack '{stack}' still holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} at the end of the body; pop every pushed stream")
        head, head_in = self.build_head(state)
        if self.problems:
            raise SpecError(self.problems)
        self.warn_unread(input_modules, head_in)
        model = ARModel(self.spec, image, self.layers, self.steps, head, head_in, input_modules, self.rows)
        model.transformations = transformations
        return model

    def warn_unread(self, input_modules: nn.ModuleDict, head_in: str) -> None:
        """Warn about inputs that no block reads: the caller would feed them for nothing (a class label that
        conditions nothing, augmentation choices the model is never told)."""
        read = {ref.name for step in self.steps for ref in [*step.inputs, *(r for refs in step.aux.values() for r in refs)] if ref.kind == "stream"}
        read.add(head_in)
        for name in input_modules:
            if name not in read:
                where = "/augmentation/conditioning" if self.spec.augmentation is not None and name == self.spec.augmentation.conditioning else f"/inputs/{name}"
                warnings.warn(f"{where}: input '{name}' is declared but no block reads it", SpecWarning, stacklevel=2)

    def build_augmentation(self, state: _State, input_modules: nn.ModuleDict) -> list:
        """The spec's transformations, and the label input that carries their choices (Distribution Augmentation)."""
        augmentation = self.spec.augmentation
        if augmentation is None:
            return []

        transformations = []
        seen: dict[str, int] = {}
        for i, config in enumerate(augmentation.transformations):
            key = config.model_dump_json(exclude={"probability"})
            if key in seen:
                self.problem(f"/augmentation/transformations/{i}", "duplicate",
                             f"the same transformation as /augmentation/transformations/{seen[key]}: each choice of one would repeat a choice of "
                             "the other; list it once (its probability sets how often it is drawn)")
            seen.setdefault(key, i)
            try:
                transformations.append(self.registry.transformations[config.type].cls(config, self.image))
            except BlockError as error:
                field = "" if error.field in (None, "type") else f"/{error.field}"
                self.problem(f"/augmentation/transformations/{i}{field or '/type'}", "transformation_does_not_fit", error.message)
        name = augmentation.conditioning
        if name is None:
            return transformations
        if name in state.streams:
            self.problem("/augmentation/conditioning", "duplicate", f"'{name}' is already {'the image stream' if name == IMAGE_STREAM else 'an input'}; name the conditioning stream otherwise")
        elif len(transformations) == len(augmentation.transformations):
            module = AugmentationChoices(transformations)
            input_modules[name] = module
            state.streams[name] = module.info
        else:  # a transformation did not fit (reported): the stream still exists, so that its readers are not reported too
            state.streams[name] = StreamInfo(channels=1, kind="label")
        return transformations

    def walk(self, nodes: Sequence[Any], path: str, label: str, state: _State) -> None:
        for i, config in enumerate(nodes):
            node_path, node_label = f"{path}/{i}", f"{label}/{i}" if label else f"{path}/{i}"
            if getattr(config, "invalid", False):  # a node that failed validation (arblocks.core.validate.InvalidNode)
                self.skip_invalid(config, node_path, state)
                continue
            cls = self.registry.blocks[config.type].cls
            if getattr(cls, "structural", False):
                for suffix, key, body in cls.expand(config):
                    self.walk(body, f"{node_path}/{key}", f"{node_label}{suffix}/{key}", state)
                continue
            try:
                self.add_block(cls, config, node_path, config.name or node_label, state)
            except _Failed:
                out = config.out or self.default_out(config, state)
                state.streams[out] = None  # unknown from here on; readers are skipped quietly
                state.last = out
                if getattr(config, "push", None):  # its push still happens, so later pops are not reported as well
                    state.stacks.setdefault(config.push, []).append((None, node_path))

    def skip_invalid(self, node: Any, path: str, state: _State) -> None:
        """A block whose config has problems (reported by validation): its pops and pushes happen, its output stream
        is unknown from here on, so that the blocks after it are built and their own problems reported in one round."""
        for stack in node.pops:
            if state.stacks.get(stack):
                state.stacks[stack].pop()
        first = node.first_input if node.first_input is not None else state.last
        out = node.out or (first if first not in self.readonly else "h")
        state.streams[out] = None
        state.last = out
        if node.push:
            state.stacks.setdefault(node.push, []).append((None, path))

    # -- one block ------------------------------------------------------------------------------
    def add_block(self, cls: type[Block], config: BlockConfig, path: str, label: str, state: _State) -> None:
        refs = self.refs(config.in_, state.last)
        if cls.num_inputs is not None and len(refs) != cls.num_inputs:
            self.fail(f"{path}/in", "arity", f"'{config.type}' reads {cls.num_inputs} stream(s), got {len(refs)}")
        inputs = [self.read_or_none(ref, f"{path}/in", state) for ref in refs]
        aux_refs, aux = {}, {}
        for field_name, f in type(config).model_fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            value = getattr(config, field_name)
            if extra.get(STREAM_MARK) and value is not None:
                key = f.alias or field_name
                aux_refs[field_name] = self.refs(value, state.last)
                aux[field_name] = self.concat([self.read_or_none(r, f"{path}/{key}", state) for r in aux_refs[field_name]], f"{path}/{key}")
        if any(i is None for i in [*inputs, *aux.values()]):
            raise _Failed  # an input failed earlier; that problem is already reported
        self.check_ordering(cls, config, path)
        block = self.construct(cls, config, inputs, aux, self.context(path, label), path)
        read = [r.name for r in [*refs, *(r for rs in aux_refs.values() for r in rs)] if r.kind == "stream"]
        mixed_before = next((self.mixed_at[name] for name in read if name in self.mixed_at), None)
        out_state = self.causal_state(block, [i.causal for i in inputs], {k: v.causal for k, v in aux.items()}, path, mixed_before)
        out = config.out or self.default_out(config, state)
        self.track_mixing(out, out_state, [*inputs, *aux.values()], mixed_before, path, config.type)
        if out in self.readonly:
            self.fail(f"{path}/out", "readonly", f"'{out}' is {'the image' if out == IMAGE_STREAM else 'a spec input'} and cannot be written; choose another stream name")
        info = block.output_info.with_(causal=out_state)
        state.streams[out] = info
        state.last = out
        if config.push:
            state.stacks.setdefault(config.push, []).append((info, path))
        self.steps.append(Step(len(self.layers), label, path, config.type, refs, aux_refs, out, config.push, info, aux))
        self.layers.append(block)
        params = count_params(block)
        self.rows.append(Row(label, config.type, info.describe(), params, 0, out_state.label))
        self.parameters += params
        if self.parameters > self.max_parameters:
            self.fail(path, "too_large", f"the model reaches {self.parameters:,} parameters at this block, more than the limit of {self.max_parameters:,}; "
                      "narrow the layers, or raise the limit with ARBLOCKS_MAX_PARAMETERS if you mean it")
        if isinstance(getattr(block, "body", None), Chain):
            self.rows.extend(Row(r.label, r.type, r.shape, r.params, r.depth + 1, r.causal) for r in block.body.rows)

    def check_ordering(self, cls: type[Block], config: BlockConfig, path: str) -> None:
        """Fail unless the block's causal statement holds under the spec's ordering (in a container's body too)."""
        if cls.orderings is not None and self.ordering.key not in cls.orderings:
            self.fail(f"{path}/type", "ordering", f"'{config.type}' is causal only under {sorted(cls.orderings)}, not under ordering '{self.ordering.key}'")

    def construct(self, cls, config, inputs, aux, ctx, path) -> Block:
        try:
            return cls(config, inputs, aux, ctx)
        except BlockError as error:
            self.fail(f"{path}/{error.field}" if error.field else path, error.type, error.message)
        except _Failed:
            raise
        except Exception as error:  # noqa: BLE001 - a plugin bug must not become a traceback
            self.fail(path, "build_failed", f"'{config.type}' failed to build: {type(error).__name__}: {error}")

    def causal_state(self, block, inputs: list[Causal], aux: dict[str, Causal], path: str, mixed_at: str | None = None) -> Causal:
        channels = self.image.channels
        cause = f" (the sub-pixel channel groups were mixed at {mixed_at})" if mixed_at else ""
        try:
            state = canonical(block.causality(inputs, aux), channels)
        except ChainCausalityError as error:
            return self.not_causal(f"{error.path}/{error.field}" if error.field else error.path, error.message + cause)
        except BlockError as error:
            return self.not_causal(f"{path}/{error.field}" if error.field else path, error.message + cause)
        if state == Causal.ABOVE and not self.rows_above_first:
            return self.not_causal(path, f"'{block.config.type}' gives state 'above' (the rows above a pixel), but the ordering "
                                         f"'{self.ordering.key}' does not generate those rows before the pixel, so they are not in its past")
        if state == Causal.FUTURE:
            seen = ", ".join(s.label for s in inputs) or "none"
            return self.not_causal(path, f"'{block.config.type}' makes its output depend on later pixels (input states: {seen}); see docs/spec-format.md#causality")
        return state

    def track_mixing(self, out: str, out_state: Causal, read: list, mixed_before: str | None, path: str, block_type: str) -> None:
        """Remember which block first mixed the sub-pixel channel groups of a stream (its state became 'current' from
        grouped inputs), so that a later error about mixed groups can name it instead of only the block that noticed."""
        grouped = (Causal.STRICT, Causal.INCLUSIVE)
        if self.image.channels > 1 and out_state == Causal.CURRENT:
            if mixed_before is not None:
                self.mixed_at[out] = mixed_before
            elif any(i is not None and i.causal in grouped for i in read):
                self.mixed_at[out] = f"{path} ({block_type})"
        else:
            self.mixed_at.pop(out, None)

    def default_out(self, config: BlockConfig, state: _State) -> str:
        first = config.in_[0] if isinstance(config.in_, list) and config.in_ else config.in_
        if first is None:
            first = state.last
        if isinstance(first, str) and first not in self.readonly:
            return first
        return "h"

    # -- streams --------------------------------------------------------------------------------
    @staticmethod
    def refs(value, last: str) -> list[Ref]:
        if value is None:
            return [Ref("stream", last)]
        items = value if isinstance(value, list) else [value]
        return [Ref("pop", v.pop) if isinstance(v, PopRef) else Ref("stream", v) for v in items]

    def read_or_none(self, ref: Ref, path: str, state: _State) -> StreamInfo | None:
        """:meth:`read`, with a failure reported and None returned, so that a block's other references are still read
        (its pops still pop: the stacks stay as the spec means them, and later pops are not reported too)."""
        try:
            return self.read(ref, path, state)
        except _Failed:
            return None

    def read(self, ref: Ref, path: str, state: _State) -> StreamInfo | None:
        if ref.kind == "pop":
            entries = state.stacks.get(ref.name)
            if not entries:
                known = did_you_mean(ref.name, [k for k, v in state.stacks.items() if v])
                self.fail(path, "empty_stack", f"pop from skip stack '{ref.name}', which is empty here{known}")
            return entries.pop()[0]
        if ref.name not in state.streams:
            self.fail(path, "unknown_stream", f"stream '{ref.name}' is read before it is written{did_you_mean(ref.name, state.streams)} (streams so far: {', '.join(state.streams)})")
        return state.streams[ref.name]

    def concat(self, infos: list[StreamInfo | None], path: str) -> StreamInfo | None:
        if any(i is None for i in infos):
            return None
        if len(infos) == 1:
            return infos[0]
        if any(i.kind != "map" for i in infos) or len({(i.height, i.width) for i in infos}) != 1:
            self.fail(path, "shape_mismatch", f"streams concatenated here must be feature maps of one size, got {', '.join(i.describe() for i in infos)}")
        state = join(*(i.causal for i in infos))
        if not keeps_groups([i.channels for i in infos], self.image.channels):
            state = canonical(ungrouped(state), self.image.channels)
        return infos[0].with_(channels=sum(i.channels for i in infos), causal=state)

    # -- containers -----------------------------------------------------------------------------
    def context(self, path: str, label: str) -> BuildContext:
        def build_chain(nodes: Sequence[Any], info: StreamInfo, key: str) -> Chain:
            return self.build_chain(nodes, info, f"{path}/{key}", f"{label}/{key}")

        return BuildContext(self.image, self.ordering.key, path, build_chain, self.rank, self.registry, self.shared)

    def build_chain(self, nodes: Sequence[Any], info: StreamInfo, path: str, label: str) -> Chain:
        layers, paths, rows = [], [], []
        failed = False
        for (node_path, node_label), config in self.flatten(nodes, path, label):
            if any(getattr(config, k, None) is not None for k in ("in_", "out", "push")):
                self.problem(node_path, "stream_in_chain", "blocks inside a container read and write the container's stream: remove in/out/push")
                failed = True
                continue
            cls = self.registry.blocks[config.type].cls
            if cls.num_inputs not in (1, None) or any(
                (f.json_schema_extra or {}).get(STREAM_MARK) and getattr(config, n) is not None
                for n, f in type(config).model_fields.items() if isinstance(f.json_schema_extra, dict)
            ):
                self.problem(node_path, "stream_in_chain", f"'{config.type}' reads auxiliary streams and cannot stand inside a container")
                failed = True
                continue
            try:
                self.check_ordering(cls, config, node_path)
                block = self.construct(cls, config, [info], {}, self.context(node_path, config.name or node_label), node_path)
            except _Failed:
                failed = True
                break
            layers.append(block)
            paths.append(node_path)
            rows.append(Row(config.name or node_label, config.type, block.output_info.describe(), count_params(block)))
            if isinstance(getattr(block, "body", None), Chain):
                rows.extend(Row(r.label, r.type, r.shape, r.params, r.depth + 1) for r in block.body.rows)
            info = block.output_info
        if failed:
            raise _Failed
        return Chain(layers, paths, info, rows)

    def flatten(self, nodes, path, label):
        for i, config in enumerate(nodes):
            node_path, node_label = f"{path}/{i}", f"{label}/{i}" if label else f"{path}/{i}"
            cls = self.registry.blocks[config.type].cls
            if getattr(cls, "structural", False):
                for suffix, key, body in cls.expand(config):
                    yield from self.flatten(body, f"{node_path}/{key}", f"{node_label}{suffix}/{key}")
            else:
                yield (node_path, node_label), config

    # -- head -----------------------------------------------------------------------------------
    def build_head(self, state: _State):
        config = self.spec.head
        name = config.in_ or state.last
        if name not in state.streams:
            self.problem("/head/in", "unknown_stream", f"stream '{name}' is never written{did_you_mean(name, state.streams)}")
            return None, name
        info = state.streams[name]
        if info is None:
            return None, name
        if info.kind != "map" or (info.height, info.width) != (self.image.height, self.image.width):
            self.problem("/head/in", "shape_mismatch", f"the head needs a feature map of the image's size {self.image.height}x{self.image.width}, got {info.describe()}")
            return None, name
        cls = self.registry.heads[config.type].cls
        try:
            head = cls(config, info, self.image)
        except BlockError as error:
            self.problem(f"/head/{error.field}" if error.field else "/head", error.type, error.message)
            return None, name
        except Exception as error:  # noqa: BLE001
            self.problem("/head", "build_failed", f"'{config.type}' failed to build: {type(error).__name__}: {error}")
            return None, name
        allowed = canonical(cls.requires, self.image.channels)
        if info.causal > allowed:
            hint = causal_hint(info.causal, allowed)
            if self.static_causality:
                # the mixing is the cause only for a head that takes grouped features (a joint head takes none of the pixel)
                cause = f"; the sub-pixel channel groups were mixed at {self.mixed_at[name]}" if name in self.mixed_at and allowed > Causal.PAST else ""
                self.problem("/head/in", "not_causal", f"head '{config.type}' needs features in state '{allowed.label}' or stricter, but stream '{name}' is '{info.causal.label}' (it may see the sub-pixel it predicts){cause}; {hint}")
        self.rows.append(Row("head", config.type, "x".join(map(str, (self.image.channels, self.image.height, self.image.width))), count_params(head), 0, ""))
        return head, name


def causal_hint(state: Causal, allowed: Causal) -> str:
    if state >= Causal.INCLUSIVE and state != Causal.CURRENT:
        return "the features see the pixel itself: start with masked_conv mask 'A' on the image, or a shifted convolution"
    if allowed <= Causal.PAST:
        return ("this head predicts a pixel's channels jointly, so its features must see only earlier pixels: "
                "shift rather than mask (shift_down, shift_right), as PixelCNN++ does")
    return "a layer mixed the sub-pixel channel groups: use masked_conv (kernel 1) instead of conv, and channel counts divisible by the image's channels"


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_model(
    spec: ModelSpec,
    registry: Registry | None = None,
    image: ImageSpec | None = None,
    static_causality: bool = True,
    device: str | torch.device | None = None,
) -> ARModel:
    """Build the model of a validated spec.

    ``image`` builds it for another image size (e.g. a small one for a causality check).
    ``static_causality=False`` skips the rejection of wirings that cannot be causal, so that the gradient
    harness can show where such a model leaks; never train such a model.
    ``device="meta"`` builds without allocating or initializing weights (shapes and parameter counts only).
    """
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return Builder(spec, registry, image, static_causality).build()
