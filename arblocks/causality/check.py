"""The causality harness: what every output of a model depends on, from gradients in float64.

For an image of ``C x H x W`` the model is run once on a random image in float64 on the CPU; the head's
parameters for each image dimension (channel ``c`` of pixel ``p``) are reduced to one number with random
weights, and one batched backward pass (``is_grads_batched``) gives the gradient of every such number with
respect to every input dimension at once. A dependency is a non-zero gradient: masked weights contribute
exact zeros, so a zero is exact, and any non-zero gradient towards a disallowed input is a leak.

Allowed inputs of output ``(c, p)`` under the spec's ordering: every channel of every pixel ranked before
``p``, and channels ``c' < c`` of ``p`` itself. Heads that model a pixel's channels jointly report one
output per pixel (``C' = 1``), which may see only pixels ranked before it.

Coverage of an output is the fraction of its allowed inputs that it actually depends on; a blind spot is
an allowed input that no path reaches (the original PixelCNN has one).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from ..core.block import Block
from ..core.builder import build_model
from ..core.head import Head
from ..core.model import ARModel
from ..core.ordering import ordering_of
from ..core.plugins import BUILTIN_PLUGINS, get_registry
from ..core.registry import Registry
from ..spec.errors import ArblocksError, SpecError
from ..spec.models import ImageSpec, ModelSpec
from .block_proof import CHECK_FULL_STREAM_BUDGET, FULL_STREAM_BUDGET, BlockProofs, full_size_layers, prove_blocks
from .perturbation import WALK, Change, find_changes, plan_walk
from .precision import low_precision_model, precision_changes
from .purity import PurityProblem, purity_problems
from .size_rule import SizeRule, size_rule

DEFAULT_CHUNK = 512


@dataclass(frozen=True)
class Violation:
    """Output ``(channel, row, col)`` depends on input ``(channel, row, col)``, which it must not see.

    ``found_by`` names the method(s) that saw it: ``gradient``, ``perturbation`` or both. An input channel of
    None means the whole pixel (the perturbation pass changes a pixel at once for heads that predict it jointly).
    """

    output: tuple[int, int, int]
    input: tuple[int | None, int, int]
    magnitude: float
    found_by: str = "gradient"

    def __str__(self) -> str:
        (oc, orow, ocol), (ic, irow, icol) = self.output, self.input
        channel = "any" if ic is None else ic
        size = "|grad|" if self.found_by == "gradient" else "|change|"
        return f"output (row {orow}, col {ocol}, channel {oc}) <- input (row {irow}, col {icol}, channel {channel}) {size}={self.magnitude:.3g} [{self.found_by}]"

    def to_dict(self) -> dict:
        return {"output": list(self.output), "input": list(self.input), "magnitude": self.magnitude, "found_by": self.found_by}


@dataclass
class ModeReport:
    """The result of one mode (``train`` or ``eval``)."""

    mode: str
    dependency: torch.Tensor  # [C', H, W, C, H, W] max |gradient| over the samples
    allowed: torch.Tensor  # same shape, bool
    violations: list[Violation] = field(default_factory=list)
    method: str = "gradient"  # or "perturbation", for models without a gradient path from the image
    #: stateful or batch-dependent forward (see arblocks.causality.purity)
    problems: list[PurityProblem] = field(default_factory=list)
    #: image changes the value-perturbation pass compared (0: not run)
    perturbations: int = 0
    #: the precisions the walk also ran in besides float64, each with its tolerance (0.0: bit for bit)
    precisions: dict[str, float] = field(default_factory=dict)

    @property
    def batch_independent(self) -> bool:
        return not any(p.kind in ("neighbours", "batch size") for p in self.problems)

    @property
    def seen(self) -> torch.Tensor:
        return self.dependency != 0

    @property
    def coverage(self) -> torch.Tensor:
        """[C', H, W]: fraction of the allowed inputs each output depends on (NaN where nothing is allowed)."""
        allowed = self.allowed.flatten(3).sum(-1).double()
        seen = (self.seen & self.allowed).flatten(3).sum(-1).double()
        return torch.where(allowed > 0, seen / allowed.clamp(min=1), torch.full_like(seen, math.nan))

    @property
    def ok(self) -> bool:
        return not self.violations and not self.problems

    def describe_precisions(self) -> str:
        """``float32 (bit for bit), bf16 (bit for bit)``: the precisions the walk also ran in, with their tolerance."""
        return ", ".join(f"{p} ({'bit for bit' if t == 0 else f'changes above {t:.3g}'})" for p, t in self.precisions.items())

    def describe_walk(self) -> str:
        """``value walk in float64, float32 (bit for bit)``: the precisions the model-level walk ran in ('' if none)."""
        walked = (["float64"] if self.perturbations else []) + ([self.describe_precisions()] if self.precisions else [])
        return f"value walk in {', '.join(walked)}" if walked else ""


@dataclass
class FullSize:
    """How a check on a smaller image speaks for the spec's own ``image`` (height, width): ``status`` is ``checked``
    (it ran at that size), ``size rule`` (every border case occurs at the smaller size, see arblocks.causality.size_rule),
    ``block by block`` (every block's statement holds at full size, see arblocks.causality.block_proof), ``partial`` (the same,
    except for the ``proofs.uncovered`` blocks) or ``not proven``; ``reason`` says why in a sentence."""

    image: tuple[int, int]
    status: str
    reason: str
    proofs: BlockProofs | None = None

    @property
    def ok(self) -> bool:
        return self.proofs is None or not self.proofs.violations

    @property
    def complete(self) -> bool:
        """Whether every block and the head were proven at full size (see :func:`check_spec` for what that saves)."""
        return self.status in ("block by block", "size rule") and self.proofs is not None and bool(self.proofs.proven) \
            and not self.proofs.uncovered and not self.proofs.violations

    def to_dict(self, max_violations: int) -> dict:
        proofs = self.proofs
        return {"image": list(self.image), "status": self.status, "reason": self.reason, **({} if proofs is None else {
            "blocks_proven": len(proofs.proven), "blocks_uncovered": _unique(proofs.uncovered),
            "block_walk_precisions": ["float64", *proofs.precisions],
            "block_violations": [str(v) for v in proofs.violations[:max_violations]]})}

    def describe(self) -> str:
        h, w = self.image
        lines = [f"at the spec's {h}x{w}: {self.status}: {self.reason}"]
        if self.proofs is not None:
            lines += [f"  {v}" for v in self.proofs.violations[:20]]
        return "\n".join(lines)


def _unique(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(paths))


@dataclass
class CausalityReport:
    image: tuple[int, int, int]
    ordering: str
    modes: dict[str, ModeReport]
    #: what the check proves for the spec's own image size (None for a model checked on its own)
    full_size: FullSize | None = None

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.modes.values()) and (self.full_size is None or self.full_size.ok)

    @property
    def coverage(self) -> torch.Tensor:
        """Coverage in evaluation mode (or the only mode checked)."""
        return self._main.coverage

    @property
    def _main(self) -> ModeReport:
        return self.modes.get("eval") or next(iter(self.modes.values()))

    @property
    def min_coverage(self) -> float:
        c = self.coverage
        return float(c[~c.isnan()].min()) if (~c.isnan()).any() else 1.0

    @property
    def mean_coverage(self) -> float:
        c = self.coverage
        return float(c[~c.isnan()].mean()) if (~c.isnan()).any() else 1.0

    @property
    def violations(self) -> list[Violation]:
        return [v for m in self.modes.values() for v in m.violations]

    def blind_spot(self) -> tuple[tuple[int, int, int], list[tuple[int, int, int]]] | None:
        """The output with the lowest coverage and the allowed inputs it does not see (None at full coverage)."""
        main = self._main
        cov = main.coverage.nan_to_num(2.0)
        if float(cov.min()) >= 1.0:
            return None
        flat = int(cov.argmin())
        output = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), cov.shape))
        unseen = (main.allowed & ~main.seen)[output].nonzero().tolist()
        return output, [tuple(u) for u in unseen]

    def summary(self) -> str:
        lines = []
        for mode, report in self.modes.items():
            status = "ok" if report.ok else "FAILED"
            lines.append(
                f"{mode}: {status}: {len(report.violations)} violation(s), batch {'independent' if report.batch_independent else 'NOT independent'}"
                + (f"; {report.describe_walk()}" if report.precisions else "")
            )
            lines.extend(f"  {v}" for v in report.violations[:10])
            if len(report.violations) > 10:
                lines.append(f"  ... and {len(report.violations) - 10} more")
        lines.append(f"coverage of the allowed past: min {self.min_coverage:.3f}, mean {self.mean_coverage:.3f}")
        if self.full_size is not None:
            lines.append(self.full_size.describe())
        spot = self.blind_spot()
        if spot:
            (c, r, col), unseen = spot
            where = ", ".join(f"({ur},{uc})c{uch}" for uch, ur, uc in unseen[:12])
            lines.append(f"blind spot: output (row {r}, col {col}, channel {c}) does not see {len(unseen)} allowed input(s): {where}{' ...' if len(unseen) > 12 else ''}")
        return "\n".join(lines)

    def to_dict(self, max_violations: int = 1000, per_output: bool = False) -> dict:
        spot = self.blind_spot()
        extra = {"coverage_per_output": self.coverage.nan_to_num(1.0).tolist()} if per_output else {}
        return {
            **extra,
            "ok": self.ok,
            "image": list(self.image),
            "ordering": self.ordering,
            "method": self._main.method,
            "coverage": {"min": self.min_coverage, "mean": self.mean_coverage},
            "blind_spot": None if spot is None else {"output": list(spot[0]), "unseen": [list(u) for u in spot[1]]},
            "full_size": None if self.full_size is None else self.full_size.to_dict(max_violations),
            "modes": {
                mode: {
                    "ok": r.ok,
                    "batch_independent": r.batch_independent,
                    "violation_count": len(r.violations),
                    "precisions": {**({"float64": 0.0} if r.perturbations else {}), **r.precisions},
                    "violations": [v.to_dict() for v in r.violations[:max_violations]],
                }
                for mode, r in self.modes.items()
            },
        }


def allowed_inputs(rank: torch.Tensor, out_channels: int, in_channels: int) -> torch.Tensor:
    """[C', H, W, C, H, W] bool: may output (c, p) depend on input (c', q)?"""
    h, w = rank.shape
    r = rank.reshape(h * w)
    earlier = r[None, :] < r[:, None]  # [p, q]: q before p
    same = torch.eye(h * w, dtype=torch.bool)
    lower_channel = torch.arange(in_channels)[None, :] < torch.arange(out_channels)[:, None]  # [c, c']
    allowed = earlier[None, :, None, :] | (same[None, :, None, :] & lower_channel[:, None, :, None])
    return allowed.reshape(out_channels, h, w, in_channels, h, w)


def _random_inputs(model: ARModel, batch: int, generator: torch.Generator):
    image = model.image
    x = torch.randint(0, image.levels, (batch, image.channels, image.height, image.width), generator=generator)
    cond = {}
    for name in model.provided_inputs:
        value = model.inputs[name].example(batch, generator)
        cond[name] = value.double() if value.is_floating_point() else value
    return x, cond


def _reduced_outputs(model: ARModel, xf: torch.Tensor, cond: dict, weights: torch.Tensor | None, generator):
    """[B, C', H, W]: the head's parameters of each image dimension, reduced with random weights."""
    view = model.head.per_dimension(model.forward_float(xf, **cond))
    if weights is None:
        weights = torch.randn(view.shape[2], generator=generator, dtype=view.dtype)
    return torch.einsum("bckhw,k->bchw", view, weights), weights


def dependency_map(
    model: ARModel, samples: int = 1, seed: int = 0, chunk: int = DEFAULT_CHUNK, outputs: list[int] | None = None
) -> torch.Tensor:
    """[C', H, W, C, H, W]: max |d output / d input| over ``samples`` random images, in the model's current mode.

    ``outputs`` (flat indices into [C', H, W]) restricts the backward passes to those outputs; the other rows are zero.
    """
    generator = torch.Generator().manual_seed(seed)
    result = None
    for _ in range(samples):
        x, cond = _random_inputs(model, 1, generator)
        xf = model.to_float(x).double().requires_grad_(True)
        out, _ = _reduced_outputs(model, xf, cond, None, generator)
        if not out.requires_grad:
            raise NoGradientPath("no gradient reaches the image (token inputs?): use the perturbation method")
        n = out.numel()
        rows = torch.arange(n) if outputs is None else torch.as_tensor(outputs)
        dep = torch.zeros(n, *xf.shape[1:], dtype=torch.float64)
        for start in range(0, len(rows), chunk):
            selected = rows[start : start + chunk]
            vectors = torch.zeros(len(selected), n, dtype=out.dtype)
            vectors[torch.arange(len(selected)), selected] = 1.0
            (g,) = torch.autograd.grad(out, xf, vectors.reshape(-1, *out.shape), retain_graph=True, is_grads_batched=True, allow_unused=True)
            if g is None:
                raise NoGradientPath("no gradient reaches the image (token inputs?): use the perturbation method")
            dep[selected] = g[:, 0].abs()
        dep = dep.reshape(*out.shape[1:], *xf.shape[1:])
        result = dep if result is None else torch.maximum(result, dep)
    return result


class NoGradientPath(RuntimeError):
    """The outputs have no gradient with respect to the image (e.g. the image enters through an embedding of its levels)."""


def _seeded_view(model: ARModel, x: torch.Tensor, cond: dict, seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.head.per_dimension(model.forward_float(model.to_float(x).double(), **cond))


@torch.no_grad()
def perturbation_map(model: ARModel, samples: int = 2, seed: int = 0) -> torch.Tensor:
    """[C', H, W, C, H, W]: |change of each output| when one input dimension is changed to another level.

    For models without a gradient path from the image (token inputs). One batched forward pass per sample: the image
    and one copy per input dimension with that dimension changed. Any change is a dependency; a dependency that a given
    change happens not to move can be missed, hence several samples.
    """
    generator = torch.Generator().manual_seed(seed)
    image = model.image
    dims = image.channels * image.height * image.width
    result = None
    for _ in range(samples):
        x, cond = _random_inputs(model, 1, generator)
        shift = torch.randint(1, image.levels, (dims,), generator=generator)
        same = x.repeat(dims, 1, 1, 1)
        changed = same.clone()
        flat = changed.reshape(dims, dims)
        flat[torch.arange(dims), torch.arange(dims)] = (flat.diagonal() + shift) % image.levels
        cond_batch = {k: v.expand(dims, *v.shape[1:]) for k, v in cond.items()}
        # each changed copy is compared with the unchanged image at the same batch position, computed the same way
        # (and with the same dropout draws in training mode)
        draw = int(torch.randint(2**31, (1,), generator=generator))
        before, after = (_seeded_view(model, b, cond_batch, draw) for b in (same, changed))
        change = (after - before).abs().amax(2)  # [dims, C', H, W]
        dep = change.permute(1, 2, 3, 0).reshape(*change.shape[1:], *x.shape[1:])
        result = dep if result is None else torch.maximum(result, dep)
    return result


def check_model(
    model: ARModel,
    modes=("train", "eval"),
    samples: int = 1,
    seed: int = 0,
    registry: Registry | None = None,
    method: str = "auto",
    values: tuple[str, ...] = WALK,
    train_values: tuple[str, ...] | None = None,
    private: bool = False,
    precisions: tuple[str, ...] = ("float32",),
    device: str | torch.device = "cpu",
    precision_values: tuple[str, ...] | None = ("max",),
    precision_modes: tuple[str, ...] | None = ("eval",),
    float64_walk: bool = True,
) -> CausalityReport:
    """Check a built model (a float64 copy is made and the model left untouched, unless ``private``: the caller's
    throwaway model is then checked in place).

    In each mode: the dependency map (``method``: ``gradient``, exact; ``perturbation``, for token inputs; ``auto``,
    gradient where a gradient path exists), the state checks of :mod:`arblocks.causality.purity`, and the value-perturbation
    walk of :mod:`arblocks.causality.perturbation` through the targets ``values`` (``()`` skips it; ``train_values``, if
    given, in training mode). ``precisions``: the walk again in each of these (:mod:`arblocks.causality.precision`:
    float32, bf16 autocast) on ``device``, for blocks whose low-precision path computes something else, through the
    targets ``precision_values`` (default: the top level; None: the mode's own), in ``precision_modes`` (default:
    evaluation; None: every mode checked). `arblocks check` and the kit pass None for both: the whole walk.
    ``float64_walk=False`` leaves the float64 walk out (the low-precision walks still run; a model without a gradient
    path still gets its map from the float64 walk): :func:`check_spec` does so once the block proof walked every block.
    """
    registry = registry or get_registry()
    walked = precisions and (values or train_values) and (precision_values is None or precision_values)
    low = low_precision_model(model, device) if walked else None  # before the probe: `private` widens the model itself
    probe = float64_probe(model, private)
    image = probe.image

    ordering = ordering_of(probe.spec, registry)
    rank = ordering.rank(image.height, image.width)
    reports, walks = {}, {}
    # weight-normalized weights are computed once for the whole check, not on every call
    with torch.nn.utils.parametrize.cached():
        for mode in modes:
            probe.train(mode == "train")
            with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: make it repeatable, leave the caller's alone
                torch.manual_seed(seed)
                targets = train_values if mode == "train" and train_values is not None else values
                dep, used = _map(probe, method, samples, seed, walk=bool(targets))
                problems = _purity(probe, seed)
                stateful = any(p.kind in ("buffers", "repeat") for p in problems)
                if dep is None and stateful:  # no gradient path, and a walk would see the state everywhere
                    dep, (changes, groups, steps) = perturbation_map(probe, samples=max(samples, 2), seed=seed), ([], [], 0)
                elif dep is None:  # no gradient path: the walk's changes, every output's, make the dependency map
                    found, groups, steps = _value_changes(probe, rank, targets, seed, every=True)
                    dep, changes = _walk_map(found, groups, probe), []
                else:
                    skip = not targets or stateful or not float64_walk
                    changes, groups, steps = ([], [], 0) if skip else _value_changes(probe, rank, targets, seed)
            allowed = allowed_inputs(rank, dep.shape[0], image.channels)
            violations = _merge(dep, allowed, changes, groups, used)
            reports[mode] = ModeReport(mode, dep, allowed, violations, used, problems, steps)
            walks[mode] = (precision_values if precision_values is not None else targets) if targets and not stateful else ()
            if precision_modes is not None and mode not in precision_modes:
                walks[mode] = ()
    # outside the float64 probe's cache of weight-normalized weights, which copies of a model share
    for mode, report in reports.items():
        for precision in precisions if walks[mode] else ():
            probe.train(mode == "train")
            with torch.random.fork_rng(devices=[]):
                found, groups, _, report.precisions[precision] = precision_changes(probe, rank, walks[mode], seed, precision, device, model=low)
            known = set(report.violations)
            report.violations += [v for v in _merge(torch.zeros_like(report.dependency), report.allowed, found, groups,
                                                    walk_label=f"perturbation in {precision}") if v not in known]
    return CausalityReport((image.channels, image.height, image.width), ordering.key, reports)


def float64_probe(model: ARModel, private: bool = False) -> ARModel:
    """What the checks run on: a float64 copy of ``model`` (the model itself if ``private``) whose parameters take no
    gradient (the checks differentiate with respect to the inputs only)."""
    probe = (model if private else copy.deepcopy(model)).double()
    for p in probe.parameters():
        p.requires_grad_(False)
    return probe


def _purity(model: ARModel, seed: int) -> list[PurityProblem]:
    generator = torch.Generator().manual_seed(seed + 1)
    x, cond = _random_inputs(model, 3, generator)
    other = torch.stack([torch.zeros_like(x[1]), torch.full_like(x[2], model.image.levels - 1)])  # the extremes for images 1 and 2
    return purity_problems(model, x, cond, other, seed)


def _walk_map(changes: list[Change], groups: list[torch.Tensor], model: ARModel) -> torch.Tensor:
    """[C', H, W, C, H, W]: the largest change of each output when each input changed, from every change of a walk."""
    image = model.image
    outputs = 1 if model.head.joint else image.channels
    dep = torch.zeros(outputs * image.height * image.width, image.channels, image.height, image.width, dtype=torch.float64)
    for change in changes:
        row = dep[change.output]
        row[groups[change.group]] = torch.clamp(row[groups[change.group]], min=change.magnitude)
    return dep.reshape(outputs, image.height, image.width, image.channels, image.height, image.width)


def _value_changes(model: ARModel, rank: torch.Tensor, values, seed: int, every: bool = False):
    """The changes the value-perturbation walk found (``every``: of every output, else only of the outputs that must
    not see the changed input), the input groups (masks) and the walk's length."""
    plan = plan_walk(model, rank, values, seed)
    cond = {k: v.double() if v.is_floating_point() else v for k, v in plan.cond.items()}

    def run(batch):
        return _seeded_view(model, batch, {k: v.expand(len(batch), *v.shape[1:]) for k, v in cond.items()}, plan.draw)

    with torch.no_grad():
        found = find_changes(run, plan.images, plan.changed, plan.own, plan.rows, forbidden_only=not every)
    return found, plan.groups, len(plan.changed)


def _merge(dep, allowed, changes: list[Change], groups, map_method: str = "gradient", walk_label: str = "perturbation") -> list[Violation]:
    """Violations of the dependency map (made by ``map_method``) and of the perturbation walk (``walk_label``), each
    once, naming the method(s) that found it."""
    outputs = dep.shape[:3]
    by_gradient = {}
    for i in ((dep != 0) & ~allowed).nonzero().tolist():
        by_gradient[(tuple(i[:3]), tuple(i[3:]))] = float(dep[tuple(i)])
    members = [[tuple(i) for i in g.nonzero().tolist()] for g in groups]
    both, extra = set(), {}
    for change in changes:
        oc, rest = divmod(change.output, outputs[1] * outputs[2])
        out = (oc, *divmod(rest, outputs[2]))
        inputs = members[change.group]
        seen = [(out, i) for i in inputs if (out, i) in by_gradient]
        if seen:
            both.update(seen)
            continue
        key = (out, inputs[0] if len(inputs) == 1 else (None, *inputs[0][1:]))
        extra[key] = max(extra.get(key, 0.0), change.magnitude)
    both_label = "gradient, perturbation" if map_method == "gradient" else map_method
    violations = [Violation(o, i, m, both_label if (o, i) in both else map_method) for (o, i), m in by_gradient.items()]
    violations += [Violation(o, i, m, walk_label) for (o, i), m in extra.items()]
    return sorted(violations, key=lambda v: (v.output, tuple(-1 if c is None else c for c in v.input)))


AUTO_SIZES = (8, 6, 5, 4, 3, 2)
#: multiply-accumulates one mode of `build`'s automatic check may cost (about a second on 2 cores in float64)
AUTO_BUDGET = 1e10
#: the same for `arblocks check`, which tries the spec's own size first (several seconds)
CHECK_SIZES = (16, 12, 8, 6, 5, 4, 3, 2)
CHECK_BUDGET = 1e11
#: the value-perturbation walk of `build`'s automatic check: every input to the top level and to 0 in evaluation
#: mode, to the top level in training mode (`arblocks check` and the kit walk all of WALK in both modes)
BUILD_WALK, BUILD_TRAIN_WALK = ("max", "zero"), ("max",)
#: the targets of `build`'s walk in float32 (and bf16/fp16), in evaluation mode: every future group at the top level,
#: on a random image (`arblocks check` and the kit walk every target of WALK in both modes in every precision)
PRECISION_WALK, PRECISION_MODES = ("max",), ("eval",)


def _map(model: ARModel, method: str, samples: int, seed: int, walk: bool = False) -> tuple[torch.Tensor | None, str]:
    """The dependency map and the method that made it; ``(None, "perturbation")`` when the map is to come from the
    value walk (``walk``) because the model has no gradient path from the image (or ``method`` says perturbation)."""
    if method == "perturbation":
        return (None if walk else perturbation_map(model, samples=max(samples, 2), seed=seed)), "perturbation"
    try:
        return dependency_map(model, samples=samples, seed=seed), "gradient"
    except NoGradientPath:
        if method == "gradient":
            raise
        return (None if walk else perturbation_map(model, samples=max(samples, 2), seed=seed)), "perturbation"


def check_image(spec: ModelSpec, size: int | tuple[int, int] | None) -> ImageSpec:
    """The image a check runs on: the spec's, or ``size`` x ``size`` (or ``(height, width)``) where that is smaller."""
    image = spec.image
    if size is None:
        return image
    height, width = (size, size) if isinstance(size, int) else size
    return image.model_copy(update={"height": min(height, image.height), "width": min(width, image.width)})


def estimated_cost(image: ImageSpec, parameters: int, joint: bool = False, pairs: float = 0.0) -> float:
    """Rough multiply-accumulates of one dependency map: one backward pass per output dimension (per pixel for a
    joint head), each about parameters x positions, plus ``pairs`` x positions squared for the blocks whose cost grows
    with pairs of positions (see :func:`pair_channels`)."""
    positions = image.height * image.width
    return (1 if joint else image.channels) * positions * (parameters + pairs * positions) * positions


def pair_channels(model: ARModel) -> float:
    """The output channels of the blocks without a reach (attention and other blocks that may read every position),
    each weighted by the square of its stream's share of the image's positions: a check's pass costs about this
    times the positions squared on top of the parameters times the positions (attention at full resolution holds a
    score per pair of positions)."""
    pixels = model.image.height * model.image.width
    return sum(step.info.channels * (step.info.height * step.info.width / pixels) ** 2 for step in model.steps
               if step.info.kind == "map" and model.layers[step.index].reach() is None)


def build_for_check(
    spec: ModelSpec,
    size: int | str | None,
    registry: Registry | None = None,
    static_causality: bool = True,
    parameters: int | None = None,
    sizes: tuple[int, ...] = AUTO_SIZES,
    budget: float = AUTO_BUDGET,
    rule: SizeRule | None = None,
    pairs: float = 0.0,
) -> ARModel:
    """The spec's model for a small image: ``size`` x ``size`` at most, or with ``size="auto"`` the largest of
    ``sizes`` (and the size ``rule`` asks for) whose estimated cost fits ``budget`` and that the spec can be built for
    (multi-scale specs need sizes their strides divide), preferring sizes that the rule says speak for the spec's own
    image; when none fits, the smallest that builds. ``parameters`` (the model's trainable parameter count) saves a
    build when the caller knows it; ``pairs`` is :func:`pair_channels` of the spec's model."""
    if size != "auto":
        return build_model(spec, registry, check_image(spec, size), static_causality)
    registry = registry or get_registry()
    if parameters is None:
        parameters = build_model(spec, registry, static_causality=static_causality, device="meta").num_parameters()
    joint = registry.heads[spec.head.type].cls.joint
    full = (spec.image.height, spec.image.width)
    shapes = {(min(s, full[0]), min(s, full[1])) for s in sizes} | ({rule.needed} if rule else set())
    candidates = sorted(shapes, key=lambda c: (c[0] * c[1], c), reverse=True)
    affordable = [c for c in candidates if estimated_cost(check_image(spec, c), parameters, joint, pairs) <= budget]
    proving = [c for c in affordable if rule is not None and rule.covers(*c)]
    over = [c for c in reversed(candidates) if c not in affordable]
    first_error = None
    # the largest affordable size that speaks for the full image, else the largest affordable, else the smallest that builds
    for candidate in proving + [c for c in affordable if c not in proving] + over:
        try:
            return build_model(spec, registry, check_image(spec, candidate), static_causality)
        except SpecError as error:
            first_error = first_error or error
    raise first_error


def check_spec(
    spec: ModelSpec,
    size: int | str | None = "auto",
    modes=("train", "eval"),
    samples: int = 1,
    seed: int = 0,
    registry: Registry | None = None,
    static_causality: bool = True,
    full: ARModel | None = None,
    method: str = "auto",
    thorough: bool = False,
    values: tuple[str, ...] | None = None,
    train_values: tuple[str, ...] | None = None,
    precisions: tuple[str, ...] = ("float32",),
    device: str | torch.device = "cpu",
) -> CausalityReport:
    """Build ``spec`` for a small image (see :func:`build_for_check`) and check it in every mode.

    ``thorough`` picks the automatic size as `arblocks check` does (the spec's own size where feasible), walks every
    target of :data:`WALK` in both modes, and, when the check's size does not speak for the spec's own image by the
    size rule, proves it block by block (:mod:`arblocks.causality.block_proof`); `build` walks :data:`BUILD_WALK`
    (:data:`BUILD_TRAIN_WALK` in training mode) and says whether its size speaks for the full image.
    ``values``/``train_values`` choose the walk's targets (``()``: no walk). ``full`` is the spec's model at its own
    size if the caller has it (any device; it is only read), else it is built on the meta device.

    When ``thorough`` checks a smaller image, the block proof runs first, its value walk in float64 and in each of
    ``precisions``. If it proves every block and the head at full size, the guarantee for the spec's own image rests
    on it and the whole model's value walk would re-prove it at the smaller size: the float64 walk is left out, and the
    low-precision walk keeps the top-level target in evaluation mode (:data:`PRECISION_WALK`), as a check of how the
    blocks compose in those precisions (autocast hands a block the previous block's bf16 output; the block proof hands
    it float32). The gradient map and the state checks run in full either way.
    """
    torch.manual_seed(seed)
    registry = registry or get_registry()
    full = full or build_model(spec, registry, static_causality=static_causality, device="meta")
    rule = size_rule(full, registry)
    # the budget is for the gradient map; `check`'s four-target walk in both modes costs 2-5x as much again (5x for the
    # unfold-based convolutions of lmconv, which picks 12x12 under this budget and 16x16 under a third of CHECK_BUDGET)
    sizes, budget = ((max(spec.image.height, spec.image.width), *CHECK_SIZES), CHECK_BUDGET / 4) if thorough else (AUTO_SIZES, AUTO_BUDGET)
    model = build_for_check(spec, size, registry, static_causality, full.num_parameters(), sizes, budget, rule, pair_channels(full))
    if values is None:
        values, train_values = (WALK, WALK) if thorough else (BUILD_WALK, BUILD_TRAIN_WALK)
    full_size = None
    if thorough and (model.image.height, model.image.width) != rule.full:
        float64_probe(model, private=True)  # the block proof reads the float64 weights; the check then reuses them
        full_size = _full_size(model, full, rule, registry, modes, seed, only_plugins=False, precisions=precisions)
    reduced = full_size is not None and full_size.complete
    walk_all = thorough and not reduced
    report = check_model(model, modes=modes, samples=samples, seed=seed, registry=registry, method=method, values=values,
                         train_values=train_values, private=True, precisions=precisions, device=device, float64_walk=not reduced,
                         precision_values=None if walk_all else PRECISION_WALK, precision_modes=None if walk_all else PRECISION_MODES)
    # `build` proves the plugins' blocks at full size (their code is the user's); `check` every block and the head
    report.full_size = full_size or _full_size(model, full, rule, registry, modes, seed, only_plugins=not thorough, precisions=precisions)
    return report


def _full_size(model: ARModel, full: ARModel, rule: SizeRule, registry: Registry, modes, seed: int, only_plugins: bool,
               precisions: tuple[str, ...] = ()) -> FullSize:
    """What a check of ``model`` (the check's float64 copy) proves for ``full`` (the spec at its own size); the blocks'
    value walk runs in float64 and in each of ``precisions``."""
    size = (model.image.height, model.image.width)
    (h, w), (nh, nw) = rule.full, rule.needed
    if size == rule.full:
        return FullSize(rule.full, "checked", "the check ran at the spec's own size")
    # the size rule rests on the blocks' stated reaches, so the blocks are proven at full size (which tests those) either way
    rank = ordering_of(full.spec, registry).rank(h, w)
    with torch.nn.utils.parametrize.cached():
        proofs = prove_blocks(model, full, rank, modes=modes, seed=seed, select=_plugin_code(registry) if only_plugins else None,
                              budget=FULL_STREAM_BUDGET if only_plugins else CHECK_FULL_STREAM_BUDGET,
                              full_layer=full_size_layers(model, full, registry), precisions=precisions)
    proven, uncovered = _unique(proofs.proven), _unique(proofs.uncovered)
    shown = ", ".join(uncovered[:5]) + (f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else "")
    why = rule.reason if rule.extent is None else f"{rule.reason}; the size rule needs {nh}x{nw}, more than the check affords"
    if proofs.violations:
        status, reason = "FAILED", f"{len(proofs.violations)} violation(s) of a block's causal statement or reach at full size"
    elif rule.covers(*size):
        status, reason = "size rule", f"{rule.reason}, so every border case of {h}x{w} occurs at {size[0]}x{size[1]}"
    elif only_plugins:
        status = "not proven"
        reason = (f"{why}. " + (f"The plugin blocks ({len(proven)}) keep their causal statements at full size"
                                + (f", except the uncovered {shown}" if uncovered else "") + "; " if proven or uncovered else "")
                  + "`arblocks check` proves every block at full size")
    elif uncovered:
        status, reason = "partial", (f"{len(proven)} blocks (the head included) keep their causal statements at full size; "
                                     f"not covered (no reach and no dependency mask, checked inside the model at {size[0]}x{size[1]} only): {shown}")
    else:
        masked = len(_unique(proofs.by_mask))
        through = f", {masked} of them through their dependency masks" if masked else ""
        walked = ", ".join(("float64", *proofs.precisions))
        status, reason = "block by block", (f"every block and the head ({len(proven)}{through}) keep their causal statements at full size, "
                                            f"value walk in {walked} ({why})")
    return FullSize(rule.full, status, reason, proofs)


def _plugin_code(registry: Registry):
    """A test of whether a module holds a block or head that no built-in plugin provides."""
    builtin = {e.cls for kind in (registry.blocks, registry.heads) for e in kind.values() if e.plugin in BUILTIN_PLUGINS}
    return lambda module: any(isinstance(m, (Block, Head)) and type(m) not in builtin for m in module.modules())


class CausalityError(ArblocksError):
    """A spec failed the causality check where one was required (train, eval, sample)."""


def require_causal(spec, action: str, registry: Registry | None = None, full=None, precisions: tuple[str, ...] = ("float32",),
                   device: str | torch.device = "cpu") -> str:
    """Run the check of `arblocks build` on ``spec`` (every stage of a spec with stages); raise
    :class:`CausalityError` if it fails, else say what was checked. ``full`` is the model the command already built
    from ``spec`` (an :class:`ARModel`, or a staged model for a spec with stages), so that the check builds only its
    small copy; it is only read, and the global random state is left as it was."""
    stages = getattr(spec, "stage_specs", None)
    if stages is not None:
        fulls = list(full.stages) if full is not None else [None] * len(stages)
        return "; ".join(f"stage '{name}' {require_causal(stage, action, registry, model, precisions, device)}"
                         for name, stage, model in zip((s.name for s in spec.stages), stages, fulls))
    with torch.random.fork_rng(devices=[]):
        report = check_spec(spec, size="auto", registry=registry, full=full, precisions=precisions, device=device)
    where = "x".join(map(str, report.image))
    if not report.ok:
        leaks = sum(len(m.violations) for m in report.modes.values())
        raise CausalityError(
            f"'{spec.name}' fails the causality check on a {where} image ({leaks} violation(s)): its outputs see pixels they must not, "
            f"so its {action} would be meaningless. `arblocks check SPEC` shows where; pass --no-check to {action} anyway"
        )
    walked = report._main.describe_precisions()
    return f"passed on a {where} image ({', '.join(report.modes)} mode; value walk in float64{', ' + walked if walked else ''})"
