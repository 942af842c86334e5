"""A conformance kit for blocks, built-in or third-party.

``check_block(block_type)`` (or ``check_plugin(plugin_name)`` for every block and attention pattern a plugin registers)
builds small models that compose the block with the built-in ones and checks what every block must satisfy
(``check_pattern(pattern_type)`` does the same for transformer models that attend with the pattern):

* **causality**: the full check of :func:`arblocks.causality.check_model`, in training and evaluation mode: no
  dependence on future pixels and later channels, by float64 gradients and by the value-perturbation walk (which sees
  ``detach``, ``round``, comparisons and thresholds), and a pure forward (no buffer changes, the same outputs on a
  second call, an image's outputs independent of the rest of its batch), for every composition: the block as the
  first layer (reading the image), after a first layer, in a residual, twice in a row, at half the resolution (between
  a stride-2 step down and up, as on a U-Net's lower level), and on an earlier stage's variable (a fully known map,
  as in a model of several stages, at the image's size and at half of it) concatenated to the features; 1 and 3 image channels; a
  per-channel softmax head and a joint logistic-mixture head. Compositions that the block's own causal statement
  rules out are refused by the builder and skipped; the others must hold. The first two compositions are also proven
  block by block (:mod:`arblocks.causality.block_proof`) for a 4x40 and a 40x4 image: the block's dependencies on a window, placed at
  every position, keep its causal statement, and it reads nothing beyond its stated ``reach`` (a far tap that the
  kit's small images cannot show);
* **state_dict round trip**: a second model loaded from the first one's state dict computes the same outputs;
* **batch-size independence**: an image's outputs do not change with the size of its batch or its neighbours;
* **float32 and float64**: the model runs in both and agrees;
* **devices**: the model moves to the ``meta`` device and runs there (no tensor is created on a fixed device inside
  ``forward``), and to CUDA when there is one;
* **incremental step**: in float64, the cached sampler (which uses the block's ``forward_at`` or ``reach``, see
  :mod:`arblocks.core.incremental`) draws the naive sampler's images from one seed, and the parameters of every draw equal
  the full forward pass's (to 1e-9). A block with neither is recomputed over the whole map: correct, and noted.

``check_view(view_type)`` checks a view (a deterministic function of the image that a stage models, see
:mod:`arblocks.staged.views`) for every image it fits: integer levels of its declared output, the same levels for an image
alone or in any batch, and ``known_pixels`` sound (no pixel it calls known changes when the unknown image pixels are
redrawn). ``check_plugin`` runs it on the views a plugin registers, and ``check_transformation`` on its transformations
(choice 0 the identity, every choice a bijection of the sub-pixels, each image under its own choice).

A block or pattern class may give ``examples``: a list of config dicts (without ``type``) to test; otherwise its
defaults are used.
Use it from a plugin's own tests::

    from arblocks.testing import check_plugin

    def test_conformance():
        report = check_plugin("my_plugin")
        assert report.ok, report.summary()
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from .attention import flex as flex_attention
from .causality.block_proof import FULL_STREAM_BUDGET, full_size_layers, prove_blocks
from .causality.check import check_model, float64_probe
from .causality.mask_proof import states_mask
from .core.builder import build_model
from .core.ordering import ordering_of
from .core.plugins import get_registry
from .core.registry import Registry
from .core.validate import parse_spec
from .sampling.cached import CachedSampler, SamplingError
from .sampling.sample import NaiveSampler
from .spec.errors import BlockError, SpecError
from .spec.models import ImageSpec


@dataclass
class Finding:
    block: str
    case: str
    check: str
    ok: bool
    detail: str = ""


@dataclass
class ConformanceReport:
    findings: list[Finding] = field(default_factory=list)
    #: what passed but costs the user something (a block without an incremental step), one line each
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def summary(self) -> str:
        lines = [f"{len(self.findings)} check(s), {len(self.failures())} failed"]
        lines += [f"  FAIL {f.block} [{f.case}] {f.check}: {f.detail}" for f in self.failures()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def table(self) -> list[tuple[str, str, int, int]]:
        """(block, check, passed, failed) per block and check, in the order they ran."""
        counts: dict[tuple[str, str], list[int]] = {}
        for f in self.findings:
            counts.setdefault((f.block, f.check), [0, 0])[0 if f.ok else 1] += 1
        return [(block, check, passed, failed) for (block, check), (passed, failed) in counts.items()]

    def extend(self, other: ConformanceReport) -> None:
        self.findings.extend(other.findings)
        self.notes.extend(n for n in other.notes if n not in self.notes)


#: per head: a 1x1 layer that brings a block's output back to the residual's width, keeping the state that head needs
PROJECTIONS = {
    "categorical": {"type": "masked_conv", "mask": "B", "kernel_size": 1, "channels": 12},
    "logistic_mixture": {"type": "conv", "channels": 12},
}
RESIDUAL_CASE = "in a residual"

#: per head: a first layer on the image and a layer after the block, both keeping the state that head needs
SURROUNDINGS = {
    "categorical": (  # per-channel softmax: features in state 'strict' (mask A, then mask B)
        {"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 12, "out": "h"},
        {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 12},
    ),
    "logistic_mixture": (  # a pixel predicted jointly: features in state 'past' (shifted convolutions)
        {"type": "down_right_shifted_conv", "kernel_size": [2, 2], "shift_right": True, "channels": 12, "out": "h"},
        {"type": "down_right_shifted_conv", "kernel_size": [2, 2], "channels": 12},
    ),
}


def compositions(block_type: str, example: dict, head: str) -> list[tuple[str, list[dict]]]:
    """Small bodies that place the block among built-in blocks."""
    block = {"type": block_type, **example}
    first, after = SURROUNDINGS[head]
    return [
        ("as the first layer, on the image", [{**block, "out": "h"}, after]),
        ("after the first layer", [first, block, after]),
        (RESIDUAL_CASE, [first, {"type": "residual", "body": [{"type": "elu"}, block]}, after]),
        ("twice, with activations", [first, block, {"type": "tanh"}, block, after]),
        (EARLIER_CASE, [first, {**block, "in": EARLIER, "out": "c"}, {"type": "concat", "in": ["h", "c"], "out": "h"}, after]),
        (HALF_CASE, [first, *at_half_resolution(block), after]),
        (EARLIER_HALF_CASE, [first, {**block, "in": EARLIER_HALF, "out": "c"}, {"type": "concat", "in": ["h", "c"], "out": "h"}, after]),
    ]


def at_half_resolution(block: dict) -> list[dict]:
    """The block on a U-Net's lower level: a stride-2 step down from the features, the block (its stream fields that
    name the features pointed at that level), the transposed step back up, added to the features."""
    low = {key: "low" if value == "h" else value for key, value in block.items()}
    return [{"type": "down_right_shifted_conv", "in": "h", "out": "low", "kernel_size": [2, 2], "shift_right": True, "stride": 2},
            {**low, "in": "low", "out": "low"},
            {"type": "down_right_shifted_deconv", "in": "low", "out": "up"},
            {"type": "add", "in": ["h", "up"], "out": "h"}]


#: the input that stands for an earlier stage's variable in a model of several stages (fully known: state none)
EARLIER = "earlier"
#: the composition that reads it; a block whose output cannot join the features there (one that changes the size) skips it
EARLIER_CASE = "on an earlier stage's variable, concatenated to the features"
#: an earlier stage's variable at half the image's size (a pyramid's lower level), and the composition that reads it
#: (a block that upsamples it, such as ``deconv``, joins the features there)
EARLIER_HALF = "earlier_half"
EARLIER_HALF_CASE = "on an earlier stage's variable at half size, concatenated to the features"
#: the block at half the resolution, between a stride-2 step and its transposed step (attention on a U-Net's lower level)
HALF_CASE = "at half the resolution, between a stride-2 step down and up"
#: compositions a block may not fit (its size or its streams' rule it out): skipped when they do not build
OPTIONAL_CASES = (EARLIER_CASE, EARLIER_HALF_CASE, HALF_CASE)


def _spec(body: list[dict], channels: int, size: int, head: str) -> dict:
    head_config = {"type": head, **({"components": 2} if head == "logistic_mixture" else {})}
    read = {block.get("in") for block in body if isinstance(block.get("in"), str)}
    inputs = {EARLIER: {"type": "conditioning_map", "channels": 12}, EARLIER_HALF: {"type": "conditioning_map", "channels": 12, "factor": 2}}
    if EARLIER_HALF in read or any(block.get("stride") == 2 for block in body):
        size += size % 2  # an even size, which halves exactly
    return {"name": "conformance", "image": {"channels": channels, "height": size, "width": size, "bits": 4},
            "inputs": {name: config for name, config in inputs.items() if name in read}, "body": body, "head": head_config}


#: the precisions the kit's value walk runs in besides float64 (a fast path for float32 or bf16 is proven too)
KIT_PRECISIONS = ("float32", "bf16")

#: every check of the kit, in the order it runs them
CHECKS = ("causality", "state_dict round trip", "batch-size independence", "float32 and float64", "devices", "incremental step")


def check_block(block_type: str, registry: Registry | None = None, size: int = 5, checks: tuple[str, ...] = CHECKS) -> ConformanceReport:
    """Run ``checks`` (default: all of :data:`CHECKS`) on small models that use ``block_type``."""
    registry = registry or get_registry()
    entry = registry.blocks[block_type]
    examples = getattr(entry.cls, "examples", None) or [{}]
    report = ConformanceReport()
    for (i, example), channels, head in itertools.product(enumerate(examples), (1, 3), SURROUNDINGS):
        for name, body in compositions(block_type, example, head):
            case = f"example {i}, {channels} channel(s), {head} head, {name}"
            try:
                spec, model = _build(body, channels, size, head, registry)
            except SpecError as error:
                if name == RESIDUAL_CASE and any("must keep the shape" in p.message for p in error.problems):
                    # a block that changes the width: in a residual behind a 1x1 layer back to the residual's width
                    case += ", projected back to the residual's width"
                    body = [body[0], {"type": "residual", "body": [*body[1]["body"], PROJECTIONS[head]]}, body[2]]
                    try:
                        spec, model = _build(body, channels, size, head, registry)
                    except SpecError as again:
                        error = again
                    else:
                        _run_checks(report, block_type, case, spec, model, registry, checks)
                        continue
                if all(p.type == "not_causal" for p in error.problems) or name in OPTIONAL_CASES:
                    continue  # the block's own statement rules this use out, and the builder refuses it: nothing to test
                report.findings.append(Finding(block_type, case, "builds", False, "; ".join(str(p) for p in error.problems)))
                continue
            _run_checks(report, block_type, case, spec, model, registry, checks)
    if not any(f.check == "causality" for f in report.findings):
        report.findings.append(Finding(block_type, "all", "applicable", False, "no composition with the built-in blocks builds: give the block `examples`"))
    return report


def _build(body: list[dict], channels: int, size: int, head: str, registry: Registry):
    spec = parse_spec(_spec(body, channels, size, head), registry=registry)
    torch.manual_seed(0)
    return spec, build_model(spec, registry=registry)


def pattern_bodies(pattern: dict, channels: int) -> list[tuple[str, list[dict], dict]]:
    """Transformer models that use an attention pattern: (case, body, head config)."""
    sub = channels > 1
    embed = {"type": "token_embedding", "in": "x", "out": "h", "channels": 8, "subpixels": sub}
    block = {"type": "transformer_block", "heads": 2, "subpixels": sub, "pattern": pattern}
    per_head = {**block, "pattern": [pattern, {"type": "full"}]}
    head = {"type": "categorical", "projection": "per_subpixel" if sub else "masked"}
    return [("one block", [embed, block], head), ("two blocks, the pattern on one head group", [embed, block, per_head], head)]


def check_pattern(pattern_type: str, registry: Registry | None = None, size: int = 5) -> ConformanceReport:
    """Run the kit's checks on transformer models whose attention uses ``pattern_type`` (its class's ``examples``, or
    its defaults), over pixel (1 channel) and sub-pixel (3 channels) sequences."""
    registry = registry or get_registry()
    entry = registry.attention_patterns[pattern_type]
    examples = getattr(entry.cls, "examples", None) or [{}]
    report = ConformanceReport()
    for (i, example), channels in itertools.product(enumerate(examples), (1, 3)):
        for name, body, head in pattern_bodies({"type": pattern_type, **example}, channels):
            case = f"example {i}, {channels} channel(s), {name}"
            data = {"name": "conformance", "image": {"channels": channels, "height": size, "width": size, "bits": 4}, "body": body, "head": head}
            try:
                spec = parse_spec(data, registry=registry)
                torch.manual_seed(0)
                model = build_model(spec, registry=registry)
            except SpecError as error:
                report.findings.append(Finding(pattern_type, case, "builds", False, "; ".join(str(p) for p in error.problems)))
                continue
            _run_checks(report, pattern_type, case, spec, model, registry)
            _finding(report, pattern_type, case, "attention kernels agree", lambda data=data: kernels_agree(data, registry))
    return report


#: the image size at which :func:`kernels_agree` compares the kernels (192 sub-pixels: tiles of 16 to 64 apply)
KERNEL_SIZE = 8


def kernels_agree(data: dict, registry: Registry) -> str | None:
    """Do the transformer blocks of ``data`` (at :data:`KERNEL_SIZE`) compute the same outputs with every attention
    kernel (``auto``: tiled where that pays, ``flex`` where this torch has FlexAttention, run uncompiled) as with the
    dense masked attention? float64, evaluation mode, one set of weights."""
    data = {**data, "image": {**data["image"], "height": KERNEL_SIZE, "width": KERNEL_SIZE}}
    kernels = ("dense", "auto", "flex") if flex_attention.available() else ("dense", "auto")
    x = torch.randint(0, 2 ** data["image"]["bits"], (2, data["image"]["channels"], KERNEL_SIZE, KERNEL_SIZE), generator=torch.Generator().manual_seed(1))
    outputs, state = {}, None
    for kernel in kernels:
        body = [{**b, "kernel": kernel} if b.get("type") == "transformer_block" else b for b in data["body"]]
        model = build_model(parse_spec({**data, "body": body}, registry=registry), registry=registry).double().eval()
        state = state or model.state_dict()
        model.load_state_dict(state)
        with torch.no_grad(), flex_attention.uncompiled():
            outputs[kernel] = model(x)
    differences = {k: (out - outputs["dense"]).abs().max().item() for k, out in outputs.items()}
    wrong = {k: d for k, d in differences.items() if d > 1e-9}
    return None if not wrong else "; ".join(f"kernel '{k}' differs from the dense masked attention by up to {d:.3g}" for k, d in wrong.items())


def _finding(report, block, case, check, fn):
    try:
        detail = fn()
        report.findings.append(Finding(block, case, check, detail is None, detail or ""))
    except Exception as error:  # noqa: BLE001 - a crash is a failed check
        report.findings.append(Finding(block, case, check, False, f"{type(error).__name__}: {error}"))


def _run_checks(report, block, case, spec, model, registry, checks=CHECKS):
    image = model.image
    x = torch.randint(0, image.levels, (4, image.channels, image.height, image.width), generator=torch.Generator().manual_seed(1))
    given = {k: model.inputs[k].example(len(x), torch.Generator().manual_seed(3)) for k in model.provided_inputs}  # an earlier stage's variable

    def causality():
        result = check_model(model, registry=registry, precisions=KIT_PRECISIONS, precision_values=None, precision_modes=None)
        if not result.ok:
            return result.summary().splitlines()[0] + f" ({len(result.violations)} violation(s))"
        return _larger_images(spec, model, block, registry) if case.endswith(LARGER_CASES) else None

    def round_trip():
        twin = build_model(spec, registry=registry, static_causality=False)
        twin.load_state_dict(model.state_dict())
        model.eval(), twin.eval()
        with torch.no_grad():
            return None if torch.equal(model(x, **given), twin(x, **given)) else "a model loaded from the state dict computes other outputs"

    def batch_size():
        model.eval()
        with torch.no_grad():
            whole = model(x, **given)
            alone = torch.cat([model(x[i : i + 1], **{k: v[i : i + 1] for k, v in given.items()}) for i in range(len(x))])
        return None if torch.allclose(whole, alone, atol=1e-5) else "an image's outputs change with its batch"

    def precision():
        model.eval()
        double = _copy(model).double()
        with torch.no_grad():
            a, b = model(x, **given).double(), double(x, **given)
        return None if torch.allclose(a, b, atol=1e-3, rtol=1e-3) else "float64 and float32 disagree"

    def devices():
        model.eval()
        meta = _copy(model).to("meta")
        out = meta.forward_float(torch.empty(2, image.channels, image.height, image.width, device="meta"), **{k: v[:2].to("meta") for k, v in given.items()})
        if out.device.type != "meta":
            return "forward on the meta device returned a tensor elsewhere"
        if torch.cuda.is_available():
            cuda = _copy(model).cuda()
            with torch.no_grad():
                if not torch.allclose(cuda(x.cuda(), **{k: v.cuda() for k, v in given.items()}).cpu(), model(x, **given), atol=1e-3):
                    return "CUDA and CPU disagree"
        return None

    def incremental():
        problem = incremental_step(_copy(model).double(), registry)
        slow = [b for b in CachedSampler(model, registry).fallback_blocks() if b.endswith(f"({block})")]
        note = (f"{block} has no incremental step (neither forward_at nor reach): it passes, but the cached sampler recomputes it over the "
                f"whole map at each of the C x H x W draws of an image (a {image.channels}x{image.height}x{image.width} image: "
                f"{image.channels * image.height * image.width} full passes of the block), where a stepped block computes each position once; "
                "docs/plugins.md says how to give it one")
        if slow and not any(n.startswith(f"{block} has no incremental step") for n in report.notes):
            report.notes.append(note)
        return problem

    for check, fn in zip(CHECKS, (causality, round_trip, batch_size, precision, devices, incremental)):
        if check in checks:
            _finding(report, block, case, check, fn)


#: image sizes (height, width) at which the kit also proves the block block by block (see arblocks.causality.block_proof): a
#: dependency that only exists on images wider or taller than the kit's own (a far tap, a reach the block understates)
LARGER_IMAGES = ((4, 40), (40, 4))
#: the compositions proven on LARGER_IMAGES: the block reading the image, and reading a first layer's features (the
#: other compositions give its inputs no other states)
LARGER_CASES = ("as the first layer, on the image", "after the first layer")


def _larger_images(spec, model, block_type: str, registry) -> str | None:
    """The block-level proof of ``block_type``'s blocks in ``model`` for the same body on each of LARGER_IMAGES; a
    block that states a dependency mask is proven through it as well (however cheap its full-size streams), so that
    its matrices are held to the contract."""
    probe = float64_probe(model)
    cls = registry.blocks[block_type].cls if block_type in registry.blocks else None
    select = lambda m: cls is not None and any(isinstance(x, cls) for x in m.modules())  # noqa: E731
    budgets = (FULL_STREAM_BUDGET, 0.0) if any(select(m) and states_mask(m) for m in probe.layers) else (FULL_STREAM_BUDGET,)
    for height, width in LARGER_IMAGES:
        image = spec.image.model_copy(update={"height": height, "width": width})
        try:
            full = build_model(spec, registry=registry, image=image, static_causality=False, device="meta")
        except SpecError:
            continue  # e.g. strides that do not divide the size
        rank = ordering_of(spec, registry).rank(height, width)
        for budget in budgets:
            with torch.nn.utils.parametrize.cached():
                proofs = prove_blocks(probe, full, rank, select=select, budget=budget, full_layer=full_size_layers(probe, full, registry),
                                      precisions=KIT_PRECISIONS)
            if proofs.violations:
                how = " through its dependency mask" if budget == 0 else ""
                return f"on a {height}x{width} image, block by block{how}: {proofs.violations[0]} ({len(proofs.violations)} violation(s))"
    return None


def incremental_step(model, registry=None) -> str | None:
    """None when the cached sampler agrees exactly with the naive one on ``model`` (float64), else what differs."""
    conditioning = {k: model.inputs[k].example(2, torch.Generator().manual_seed(0)) for k in model.provided_inputs}
    naive = NaiveSampler(model, registry).sample(2, conditioning=conditioning, generator=torch.Generator().manual_seed(2))
    sampler = CachedSampler(model, registry)
    try:
        cached = sampler.sample(2, conditioning=conditioning, generator=torch.Generator().manual_seed(2))
    except SamplingError as error:
        return str(error)
    if not torch.equal(naive, cached):
        return "the cached sampler drew other images than the naive one from the same seed"
    difference = sampler.last_run["max_difference"]
    return None if difference <= 1e-9 else f"a draw's parameters differ from the full forward pass's by {difference:.3g}"


def _copy(model):
    import copy

    return copy.deepcopy(model)


def check_plugin(plugin: str, registry: Registry | None = None, size: int = 5) -> ConformanceReport:
    """Check every block, attention pattern and view registered by ``plugin`` (its entry-point or module name, or its distribution name)."""
    registry = registry or get_registry()
    mine = lambda entries: [e.name for e in entries.values() if plugin in (e.plugin, e.distribution) and not getattr(e.cls, "structural", False)]  # noqa: E731
    blocks, patterns, views = mine(registry.blocks), mine(registry.attention_patterns), mine(registry.views)
    transformations = mine(registry.transformations)
    if not blocks and not patterns and not views and not transformations:
        kinds = (registry.blocks, registry.attention_patterns, registry.views, registry.transformations)
        known = sorted({e.plugin for kind in kinds for e in kind.values()})
        raise ValueError(f"plugin '{plugin}' registers no block, attention pattern, view or transformation (known plugins: {known})")
    report = ConformanceReport()
    for name in blocks:
        report.extend(check_block(name, registry, size))
    for name in patterns:
        report.extend(check_pattern(name, registry, size))
    for name in views:
        report.extend(check_view(name, registry))
    for name in transformations:
        report.extend(check_transformation(name, registry))
    return report


def check_any(name: str, registry: Registry | None = None, size: int = 5) -> ConformanceReport:
    """The kit for ``name``: a registered block, attention pattern, view or transformation type, or a plugin (its
    entry-point, module or distribution name): what ``arblocks kit NAME`` runs."""
    registry = registry or get_registry()
    if name in registry.blocks and not getattr(registry.blocks[name].cls, "structural", False):
        return check_block(name, registry, size)
    if name in registry.attention_patterns:
        return check_pattern(name, registry, size)
    if name in registry.views:
        return check_view(name, registry)
    if name in registry.transformations:
        return check_transformation(name, registry)
    return check_plugin(name, registry, size)


def check_transformation(transformation_type: str, registry: Registry | None = None) -> ConformanceReport:
    """Check a transformation's contract (choice 0 the identity, every choice a bijection of the sub-pixels, each image
    under its own choice) for each of its ``examples`` on every image of VIEW_IMAGES it applies to."""
    return _check_on_images("transformation", transformation_type, registry, _transformation_contract)


def _transformation_contract(transformation, image) -> str | None:
    n = transformation.choices
    if not isinstance(n, int) or n < 1:
        return f"choices must be a positive integer, got {n!r}"
    x = torch.arange(image.dims).reshape(1, image.channels, image.height, image.width).repeat(n, 1, 1, 1)  # every sub-pixel distinct
    out = transformation.apply(x, torch.arange(n))
    if tuple(out.shape) != tuple(x.shape):
        return f"apply changed the shape {list(x.shape)} to {list(out.shape)}"
    if not torch.equal(out[0], x[0]):
        return "choice 0 must be the identity"
    for k in range(n):
        if not torch.equal(out[k].flatten().sort().values, x[k].flatten()):
            return f"choice {k} is not a bijection of the sub-pixels (a model of the transformed images would not be one of the images)"
    alone = torch.cat([transformation.apply(x[k : k + 1], torch.tensor([k])) for k in range(n)])
    return None if torch.equal(alone, out) else "an image's transformation depends on the rest of its batch"


#: images a view is tried on: (channels, height, width, bits)
VIEW_IMAGES = ((1, 8, 8, 8), (3, 8, 8, 8), (3, 12, 6, 5), (1, 4, 4, 1))


def check_view(view_type: str, registry: Registry | None = None) -> ConformanceReport:
    """Check a view's contract (see the module's docstring) for each of its ``examples`` on every image of VIEW_IMAGES it fits."""
    return _check_on_images("view", view_type, registry, _view_contract)


def _check_on_images(kind: str, type_name: str, registry: Registry | None, contract) -> ConformanceReport:
    """``contract(instance, image)`` (None, or what is wrong) for each of the type's ``examples`` built on every image of
    VIEW_IMAGES it fits (views and transformations: functions of the image, checked without a model)."""
    registry = registry or get_registry()
    cls = registry.entries[kind][type_name].cls
    report = ConformanceReport()
    for (i, example), (c, h, w, bits) in itertools.product(enumerate(getattr(cls, "examples", None) or [{}]), VIEW_IMAGES):
        image = ImageSpec(channels=c, height=h, width=w, bits=bits)
        try:
            instance = cls(cls.Config.model_validate({"type": type_name, **example}), image)
        except BlockError:
            continue  # it does not fit this image, and says so
        case = f"example {i}, image {c}x{h}x{w} at {bits} bits"
        _finding(report, type_name, case, f"{kind} contract", lambda instance=instance, image=image: contract(instance, image))
    if not report.findings:
        report.findings.append(Finding(type_name, "all", "applicable", False, f"the {kind} fits none of the kit's images: give it `examples`"))
    return report


def _view_contract(view, image) -> str | None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, image.levels, (6, image.channels, image.height, image.width), generator=generator)
    out = view(x)
    o = view.output
    if tuple(out.shape) != (6, o.channels, o.height, o.width):
        return f"the view gives {list(out.shape)}, its declared output is {o.channels}x{o.height}x{o.width}"
    if out.is_floating_point() or out.is_complex() or int(out.min()) < 0 or int(out.max()) >= o.levels:
        return f"the view must give integer levels in [0, {o.levels - 1}] (got {out.dtype}, {out.min().item()}..{out.max().item()})"
    if not torch.equal(torch.cat([view(x[k : k + 1]) for k in range(len(x))]), out) or not torch.equal(view(x), out):
        return "an image's view depends on its batch or on the call"
    for trial in range(4):
        mask = torch.rand(image.height, image.width, generator=generator) < 0.5
        mask[: trial + 1] = True  # some whole rows known, as in a completion
        try:
            known = view.known_pixels(mask)
        except NotImplementedError:
            return None  # completion through this view is refused: nothing to hold
        if tuple(known.shape) != (o.height, o.width) or known.dtype != torch.bool:
            return f"known_pixels gives {list(known.shape)} {known.dtype}, not a bool mask of the output's {o.height}x{o.width}"
        redrawn = torch.where(mask, x, torch.randint(0, image.levels, x.shape, generator=generator))
        if not torch.equal(view(redrawn)[..., known], out[..., known]):
            return "a pixel known_pixels calls known changed when the unknown image pixels were redrawn"
    return None
