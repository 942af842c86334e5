"""Distribution Augmentation (Jun et al., 2020) in a spec's ``augmentation`` section: the transformation contract
(:class:`Transformation`, described in :mod:`arblocks.staged.transformations` with the built-in ones), the input that
tells the model the choices, and drawing and applying them.

Training draws, per image and step, one choice of each listed transformation (:mod:`arblocks.staged.transformations`),
applies them in order to the image, and passes the choices to the model on the conditioning input: a label stream
of ``[B, K]`` indices into one joint table of sum(choices) rows, which blocks read like a class label (the rows of an
image's K choices are summed, as the official code sums one learned start-token row per transformation kind).
Evaluation and sampling use the identity (every choice 0) unless told otherwise (``{"rotation": 1}``): the model is
then a model of the untransformed images, the one whose bits/dim the paper reports.

With ``conditioning: null`` the images are transformed but the model is not told (the paper's ablation: plain data
augmentation, which models the mixture of the transformed distributions).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from ..spec.errors import ArblocksError
from ..spec.models import Config, ImageSpec, InputConfig
from .inputs import InputType
from .ops import checks_values
from .registry import base_of
from .streams import StreamInfo


class AugmentationInputConfig(InputConfig):
    """The transformation choices of Distribution Augmentation (made by the builder from the spec's `augmentation`)."""

    type: Literal["augmentation"] = "augmentation"


class AugmentationChoices(InputType):
    """The conditioning input: ``[B, K]`` choices (one per transformation) to ``[B, K]`` rows of the joint table."""

    Config = AugmentationInputConfig
    shift_invariant = True

    def __init__(self, transformations: list):
        super().__init__(AugmentationInputConfig(), None)
        self.choices = [t.choices for t in transformations]
        offsets = torch.tensor([0, *self.choices[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.info = StreamInfo(channels=sum(self.choices), kind="label")

    def forward(self, batch, value, like):
        expected = (batch, len(self.choices))
        if tuple(value.shape) != expected or value.dtype.is_floating_point:
            raise ValueError(f"the augmentation choices must be an integer tensor of shape {list(expected)}, got {value.dtype} {list(value.shape)}")
        if checks_values(value) and value.numel() and bool(((value < 0) | (value >= torch.tensor(self.choices, device=value.device))).any()):
            raise ValueError(f"augmentation choices must lie in [0, choices) per transformation, with choices {self.choices}")
        return value.long() + self.offsets.to(value.device)

    def example(self, batch, generator=None):
        return torch.stack([torch.randint(n, (batch,), generator=generator) for n in self.choices], dim=1)

    def default(self, batch, device):
        """The identity (choice 0 of every transformation): a model of Distribution Augmentation evaluates and samples
        the untransformed images unless it is told otherwise, from Python as on the command line."""
        return torch.zeros(batch, len(self.choices), dtype=torch.long, device=device)


class AugmentationError(ArblocksError):
    """A chosen transformation that the model does not have, or a choice out of its range."""


def draw(model, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training's choices ``[B, K]``: per image, each transformation's draw (identity with chance 1 - probability)."""
    return torch.stack([t.draw(batch, generator) for t in model.transformations], dim=1)


def apply(model, x: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """The images under their choices ``[B, K]``, the transformations applied in the spec's order."""
    for k, transformation in enumerate(model.transformations):
        x = transformation.apply(x, choices[:, k].to(x.device))
    return x


def chosen(model, batch: int, wanted: dict[str, int] | None = None) -> torch.Tensor:
    """Choices ``[B, K]`` fixed for every image: 0 (the identity) unless ``wanted`` names a transformation type."""
    wanted = dict(wanted or {})
    names = [t.config.type for t in model.transformations]
    for name, value in wanted.items():
        if name not in names:
            raise AugmentationError(f"the model has no transformation '{name}'; its transformations are {', '.join(names) or 'none'}")
        n = model.transformations[names.index(name)].choices
        if not 0 <= value < n:
            raise AugmentationError(f"{name} has choices 0..{n - 1} (0 is the identity), got {value}")
    return torch.tensor([[wanted.get(name, 0) for name in names]] * batch, dtype=torch.long)


def conditioning_name(model) -> str | None:
    """The input stream that carries the choices, or None (no augmentation, or augmentation without conditioning)."""
    augmentation = model.spec.augmentation
    return None if augmentation is None else augmentation.conditioning


class TransformationConfig(Config):
    """Base of transformation configs."""

    type: str
    probability: float | None = Field(
        None, ge=0, le=1,
        description="Chance that training draws a choice other than the identity (then uniformly among them); null (the default): every choice "
        "equally likely, as the official code draws them.",
    )


@base_of("transformation")
class Transformation:
    """A family of bijections of the image, choice 0 the identity; see :mod:`arblocks.staged.transformations`."""

    Config: ClassVar[type[TransformationConfig]]
    #: configs (without ``type``) that tests build the transformation with
    examples: ClassVar[list[dict]] = [{}]
    choices: int

    def __init__(self, config: TransformationConfig, image: ImageSpec):
        self.config = config
        self.image = image

    def apply(self, x: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Each image of ``x`` under its own choice (``choice``: ``[B]``)."""
        out = x.clone()
        for k in range(1, self.choices):
            chosen = choice == k
            if bool(chosen.any()):
                out[chosen] = self.one(x[chosen], k)
        return out

    def one(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Images ``[n, C, H, W]`` under choice ``k`` (1 <= k < choices)."""
        raise NotImplementedError

    def draw(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training's choice per image: the identity with chance 1 - probability, else a uniform other choice (without
        a probability: uniform over all choices)."""
        if self.config.probability is None:
            return torch.randint(self.choices, (batch,), generator=generator)
        other = torch.rand(batch, generator=generator) < self.config.probability
        pick = torch.randint(1, self.choices, (batch,), generator=generator) if self.choices > 1 else torch.zeros(batch, dtype=torch.long)
        return torch.where(other, pick, torch.zeros_like(pick))
