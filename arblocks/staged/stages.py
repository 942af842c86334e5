"""Models of several stages: p(x) = p(a_1) p(a_2 | a_1) ... p(x | a_1, ..., a_{k-1}).

A spec with ``stages`` (instead of ``body`` and ``head``) lists the stages in order. Each models one variable, a
registered view of the image (:mod:`arblocks.staged.views`; the last stage models the image itself, view ``identity``),
with an ordinary ordering, inputs, body and head, so everything built for one model works inside a stage. The
variables of earlier stages enter a stage as extra inputs named after those stages: maps of their own size, as
floats in [-1, 1] like the image, in causal state ``none`` (fully known), which any block may read.

Each stage compiles to an ordinary :class:`arblocks.ModelSpec` (the earlier variables as ``conditioning_map``
inputs), so each is built, checked for causality and sampled like any model. :class:`StagedModel` holds the built
stages: ``nll`` is the sum of the stages' nats, ``bits_per_dim`` is over the image's dimensions. For a
deterministic view this is an upper bound on -log p(x) of the normalized model: p(x | a) may put mass on images
whose view is not a.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from ..core.builder import build_model
from ..core.model import ARModel, levels_to_float
from ..core.plugins import get_registry
from ..core.registry import Registry
from ..core.validate import parse_spec, validate_typed
from ..sampling.sample import sample_images
from ..spec.errors import BlockError, Problem, SpecError
from ..spec.models import IMAGE_STREAM, ImageSpec, StagedSpec, is_staged
from ..spec.reading import pydantic_problems, read_spec_file
from .views import View


def parse_staged(data: dict, registry: Registry | None = None, source: str | None = None) -> StagedSpec:
    """Validate a spec with stages, compiling each stage to an :class:`arblocks.ModelSpec` (``spec.stage_specs``) and
    building its view (``spec.views``). Every problem is reported with its JSON path (``/stages/1/body/3/...``)."""
    registry = registry or get_registry()
    try:
        spec = StagedSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(pydantic_problems(error, (), StagedSpec, "spec"), source) from None
    problems: list[Problem] = []
    names = [stage.name for stage in spec.stages]
    for k, name in enumerate(names):
        if name == IMAGE_STREAM or name in spec.inputs:
            problems.append(Problem(f"/stages/{k}/name", "reserved_name", f"'{name}' is {'the image stream' if name == IMAGE_STREAM else 'a spec input'}; name the stage otherwise"))
        elif name in names[:k]:
            problems.append(Problem(f"/stages/{k}/name", "duplicate", f"stage '{name}' is named twice (also /stages/{names.index(name)})"))
    views = [_view(stage.view, spec.image, ("stages", k, "view"), registry, problems) for k, stage in enumerate(spec.stages)]
    last = len(spec.stages) - 1
    if views[last] is not None and views[last].output != spec.image:
        problems.append(Problem(f"/stages/{last}/view", "last_stage", "the last stage must model the image itself (view 'identity'), so that the stages model x"))
    stage_specs = []
    for k, (stage, view) in enumerate(zip(spec.stages, views)):
        if view is None:
            continue
        mentioned = [data["stages"][k].get("body"), data.get("defaults")]  # an earlier variable becomes an input where the stage names it
        earlier = {spec.stages[j].name: _as_input(views[j], view.output) for j in range(k) if views[j] is not None and _names(mentioned, spec.stages[j].name)}
        compiled = {"name": f"{spec.name}/{stage.name}", "image": view.output.model_dump(), "ordering": data["stages"][k].get("ordering", "raster"),
                    "inputs": {**data.get("inputs", {}), **data["stages"][k].get("inputs", {}), **earlier},
                    "defaults": data.get("defaults", {}), "body": data["stages"][k]["body"], "head": data["stages"][k]["head"]}
        try:
            stage_specs.append(parse_spec(compiled, registry=registry))
        except SpecError as error:
            problems += [_in_stage(p, k, names[k + 1:]) for p in error.problems]
    if problems:
        raise SpecError(problems, source)
    spec._compiled, spec._views = stage_specs, views
    return spec


def parse_any(data: Any, registry: Registry | None = None, source: str | None = None):
    """A spec of one model (:class:`arblocks.ModelSpec`) or with stages (:class:`StagedSpec`), validated."""
    return parse_staged(data, registry, source) if is_staged(data) else parse_spec(data, registry=registry, source=source)


def _view(raw: Any, image: ImageSpec, path: tuple, registry: Registry, problems: list[Problem]) -> View | None:
    config = validate_typed({"type": raw} if isinstance(raw, str) else raw, path, registry, "view", problems)
    if config is None:
        return None
    try:
        return registry.views[config.type].cls(config, image)
    except BlockError as error:
        where = "/" + "/".join(map(str, path)) + (f"/{error.field}" if error.field and error.field != "type" else "")
        problems.append(Problem(where, "view_does_not_fit", error.message))
        return None


def _names(value: Any, name: str) -> bool:
    """Whether ``name`` occurs as a string anywhere in ``value`` (a stage's body or the defaults: the places a block
    can name a stream)."""
    if isinstance(value, str):
        return value == name
    if isinstance(value, dict):
        return any(_names(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_names(v, name) for v in value)
    return False


def _as_input(view: View, image: ImageSpec) -> dict:
    """An earlier stage's variable as an input of a stage modelling ``image``: a map whose size follows the stage's
    image (by a factor) where the sizes allow it, so that the stage can be built, checked and drawn at smaller sizes."""
    out = view.output
    factor = image.height // out.height
    if out.height * factor == image.height and out.width * factor == image.width:
        return {"type": "conditioning_map", "channels": out.channels, "factor": factor}
    return {"type": "conditioning_map", "channels": out.channels, "height": out.height, "width": out.width}


def _in_stage(problem: Problem, k: int, later: list[str]) -> Problem:
    """A stage's problem with its path inside the staged spec; reading a later stage's variable is said as such."""
    message = problem.message
    for name in later:
        if f"stream '{name}' is read before it is written" in message:
            message = f"stream '{name}' is the variable of a later stage: a stage reads only the variables of the stages before it"
    return Problem(f"/stages/{k}{problem.path}", problem.type, message)


class StagedModel(nn.Module):
    """The built stages of a :class:`StagedSpec`; see the module's docstring."""

    def __init__(self, spec: StagedSpec, stages: list[ARModel]):
        super().__init__()
        self.spec = spec
        self.image = spec.image
        self.stages = nn.ModuleList(stages)
        self.views = spec.views
        self.names = [stage.name for stage in spec.stages]

    @property
    def provided_inputs(self) -> list[str]:
        """The inputs a caller provides (class labels, ...): every stage's, less the earlier stages' variables."""
        names = [name for stage in self.stages for name in stage.provided_inputs if name not in self.names]
        return list(dict.fromkeys(names))

    @property
    def inputs(self) -> dict[str, nn.Module]:
        """The provided inputs' modules, by name (from the first stage that reads each)."""
        found: dict[str, nn.Module] = {}
        for stage in self.stages:
            for name in stage.provided_inputs:
                if name not in self.names:
                    found.setdefault(name, stage.inputs[name])
        return found

    def variables(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's variable (integer levels) for images ``x``."""
        return [view(x) for view in self.views]

    def _conditioning(self, k: int, variables: list[torch.Tensor], conditioning: dict) -> dict:
        earlier = {self.names[j]: levels_to_float(variables[j], self.views[j].output.levels, torch.get_default_dtype()) for j in range(k)}
        provided = set(self.stages[k].provided_inputs)
        return {name: value for name, value in {**conditioning, **earlier}.items() if name in provided}

    def stage_nll(self, x: torch.Tensor, **conditioning) -> list[torch.Tensor]:
        """Negative log-likelihood of each stage's variable in nats per image: a list of [B] tensors (float32), one per
        stage in the order of :attr:`names` (:meth:`nll_by_stage` gives them by name)."""
        variables = self.variables(x)
        return [stage.nll(variables[k], **self._conditioning(k, variables, conditioning)) for k, stage in enumerate(self.stages)]

    def nll_by_stage(self, x: torch.Tensor, **conditioning) -> dict[str, torch.Tensor]:
        """:meth:`stage_nll` by stage name: {name: [B] nats per image}, in the spec's order."""
        return dict(zip(self.names, self.stage_nll(x, **conditioning)))

    def forward(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        """The sum of the stages' nats per image, [B]: an upper bound on -log p(x) for deterministic views."""
        return torch.stack(self.stage_nll(x, **conditioning)).sum(0)

    def nll(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        """The sum of the stages' nats per image, [B]: an upper bound on -log p(x) for deterministic views."""
        return self(x, **conditioning)

    def bits_per_dim(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        return self.nll(x, **conditioning).sum() / (x.shape[0] * self.image.dims * math.log(2))

    def sample(self, n: int, conditioning: dict | None = None, known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
               **options) -> torch.Tensor:
        """``n`` images, stage by stage: each stage's variable drawn given the ones drawn before it (options as for
        :func:`arblocks.sampling.sample.sample_images`). A completion (``known`` with ``known_mask``) fixes, at every stage, the
        pixels of the view that the known image pixels determine, and draws the rest."""
        variables: list[torch.Tensor] = []
        for k, (stage, view) in enumerate(zip(self.stages, self.views)):
            given = self._conditioning(k, variables, conditioning or {})
            if known is not None:
                options.update(known=view(known), known_mask=view.known_pixels(known_mask))
            variables.append(sample_images(stage, n, conditioning=given, **options))
        return variables[-1]

    def num_parameters(self) -> int:
        return sum(stage.num_parameters() for stage in self.stages)


def load_staged(path, registry: Registry | None = None, **options) -> StagedModel:
    """The :class:`StagedModel` of a spec file with stages (``options`` as for :func:`arblocks.build_model`)."""
    return build_staged(parse_staged(read_spec_file(path), registry, source=str(path)), registry=registry, **options)


def build_staged(spec: StagedSpec, registry: Registry | None = None, **options) -> StagedModel:
    """Build every stage (``options`` as for :func:`arblocks.build_model`); problems carry the stage's path."""
    stages, problems = [], []
    for k, stage_spec in enumerate(spec.stage_specs):
        try:
            stages.append(build_model(stage_spec, registry, **options))
        except SpecError as error:
            problems += [_in_stage(p, k, [s.name for s in spec.stages[k + 1:]]) for p in error.problems]
    if problems:
        raise SpecError(problems)
    return StagedModel(spec, stages)


def build_any(spec, registry: Registry | None = None, **options):
    """The model of a spec with stages (a :class:`StagedModel`) or of one model (an :class:`arblocks.ARModel`)."""
    return build_staged(spec, registry, **options) if isinstance(spec, StagedSpec) else build_model(spec, registry, **options)
