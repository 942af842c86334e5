"""What both sampling engines share: the draws of a sampling call, drawing from the head, the sampler base class."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.model import ARModel, levels_to_float
from ..core.ordering import ordering_of
from ..core.plugins import get_registry
from ..spec.errors import ArblocksError


class SamplingError(ArblocksError):
    """Sampling cannot go on: non-finite distribution parameters, or a cached step that disagrees with the model."""


@dataclass
class Event:
    """One draw: the sub-pixel ``channel`` (None: every channel, for joint heads) of the pixel at ``row, col``."""

    time: int
    row: int
    col: int
    channel: int | None


def events_of(model: ARModel, rank: torch.Tensor, joint: bool, known_mask: torch.Tensor | None) -> list[Event]:
    C, width = model.image.channels, model.image.width
    events = []
    for pixel in torch.argsort(rank.flatten()).tolist():
        r, c = divmod(pixel, width)
        if known_mask is not None and bool(known_mask[r, c]):
            continue
        base = int(rank[r, c]) * C
        events.extend([Event(base, r, c, None)] if joint else [Event(base + ch, r, c, ch) for ch in range(C)])
    return events


def start_images(n: int, image, known: torch.Tensor | None, device) -> torch.Tensor:
    x = torch.zeros(n, image.channels, image.height, image.width, dtype=torch.long, device=device)
    if known is not None:
        x = known.to(device).long().expand(n, -1, -1, -1).clone()
    return x


def draw_at(model: ARModel, params: torch.Tensor, x: torch.Tensor, x_float: torch.Tensor | None, event: Event, index: int, generator, temperature: float) -> None:
    """Draw the event's sub-pixel(s) from the head's parameters at its pixel ([..., 1, 1]) into ``x`` (and ``x_float``).
    Both engines draw through here, so that one generator gives both the same images."""
    if not torch.isfinite(params).all():
        what = "every channel" if event.channel is None else f"channel {event.channel}"
        raise SamplingError(
            f"the model's distribution parameters are not finite at draw {index} (pixel row {event.row}, column {event.col}, {what}): "
            "the weights or the conditioning hold NaN or infinite values"
        )
    draw = model.head.sample(params, generator=generator, temperature=temperature)[:, :, 0, 0]  # [B, C]
    r, c, ch = event.row, event.col, event.channel
    channels = slice(None) if ch is None else slice(ch, ch + 1)
    x[:, channels, r, c] = draw[:, channels]
    if x_float is not None:
        x_float[:, channels, r, c] = levels_to_float(x[:, channels, r, c], model.image.levels, x_float.dtype)


class Sampler:
    """Base of the engines: the model (switched to evaluation mode), its head's kind and its generation order."""

    def __init__(self, model: ARModel, registry=None):
        registry = registry or get_registry()
        self.model = model.eval()
        self.joint = registry.heads[model.spec.head.type].cls.joint
        self.rank = ordering_of(model.spec, registry).rank(model.image.height, model.image.width)
        #: the pixels (row, column) in generation order
        self.positions = [divmod(int(i), model.image.width) for i in torch.argsort(self.rank.flatten())]

    def draws(self, known_mask: torch.Tensor | None, progress: bool):
        """The draws of a call (with a progress bar when asked)."""
        events = events_of(self.model, self.rank, self.joint, known_mask)
        if progress:
            from tqdm import tqdm

            return events, tqdm(events, unit="draw", dynamic_ncols=True)
        return events, events
