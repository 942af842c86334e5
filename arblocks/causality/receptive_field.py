"""What one output pixel depends on, as numbers and as a PNG (`arblocks receptive-field`).

For one predicted pixel the harness needs only a backward pass per output channel, so this runs on full-size images.
The picture shades every input pixel by the gradient magnitude (log scale), marks the predicted pixel, the allowed
past it does not see (its blind spot) and any input it must not see but does (a leak). Several specs side by side
make the difference between PixelCNN's blind spot and the full coverage of its successors visible at a glance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ..core.model import ARModel
from ..core.ordering import ordering_of
from ..core.plugins import get_registry
from ..core.registry import Registry
from .check import NoGradientPath, allowed_inputs, dependency_map, float64_probe, perturbation_map

COLOURS = {
    "predicted": (40, 90, 220),
    "blind": (225, 60, 60),
    "partial": (245, 160, 40),
    "future": (246, 246, 246),
    "leak": (255, 0, 255),
    "grid": (200, 200, 200),
    "text": (20, 20, 20),
    "background": (255, 255, 255),
}
LEGEND = [
    ("predicted", "predicted pixel"),
    ("seen", "seen (darker: larger gradient, log scale)"),
    ("blind", "allowed past, not seen (blind spot)"),
    ("partial", "allowed past, partly seen"),
    ("future", "not allowed (later pixels)"),
    ("leak", "LEAK: seen but not allowed"),
]


@dataclass
class PixelField:
    name: str
    pixel: tuple[int, int]
    magnitude: torch.Tensor  # [C', C, H, W] |gradient| of the pixel's outputs with respect to every input
    allowed: torch.Tensor  # [C', C, H, W] bool

    @property
    def seen(self) -> torch.Tensor:
        return self.magnitude != 0

    @property
    def coverage(self) -> float:
        allowed = int(self.allowed.sum())
        return 1.0 if allowed == 0 else int((self.seen & self.allowed).sum()) / allowed

    @property
    def leaks(self) -> int:
        return int((self.seen & ~self.allowed).sum())

    def cells(self) -> list[list[tuple[str, float]]]:
        """Per input pixel: its class and its magnitude (max over output channels of the sum over input channels)."""
        seen, allowed = self.seen, self.allowed
        strength = self.magnitude.sum(1).amax(0)  # [H, W]
        _, _, h, w = self.magnitude.shape
        rows = []
        for r in range(h):
            row = []
            for c in range(w):
                s, a = seen[:, :, r, c], allowed[:, :, r, c]
                if (s & ~a).any():
                    kind = "leak"
                elif (r, c) == self.pixel:
                    kind = "predicted"
                elif not a.any():
                    kind = "future"
                elif (s | ~a).all():
                    kind = "seen"
                elif (s & a).any():
                    kind = "partial"
                else:
                    kind = "blind"
                row.append((kind, float(strength[r, c])))
            rows.append(row)
        return rows


def pixel_field(model: ARModel, pixel: tuple[int, int], name: str = "", samples: int = 1, seed: int = 0, registry: Registry | None = None) -> PixelField:
    """The dependency of the outputs at ``pixel`` on every input, in float64, evaluation mode."""
    registry = registry or get_registry()
    image = model.image
    r, c = pixel
    if not (0 <= r < image.height and 0 <= c < image.width):
        raise ValueError(f"pixel ({r},{c}) is outside the {image.height}x{image.width} image")
    probe = float64_probe(model).eval()
    outputs = 1 if registry.heads[probe.spec.head.type].cls.joint else image.channels
    rows = [ch * image.height * image.width + r * image.width + c for ch in range(outputs)]
    try:
        dep = dependency_map(probe, samples=samples, seed=seed, outputs=rows)[:, r, c]  # [C', C, H, W]
    except NoGradientPath:  # token inputs: what moves when each input changes
        dep = perturbation_map(probe, samples=max(samples, 2), seed=seed)[:, r, c]

    rank = ordering_of(probe.spec, registry).rank(image.height, image.width)
    allowed = allowed_inputs(rank, outputs, image.channels)[:, r, c]
    return PixelField(name or probe.spec.name, pixel, dep, allowed)


def _shade(strength: float, low: float, high: float) -> tuple[int, int, int]:
    t = 1.0 if high <= low else (math.log(strength) - low) / (high - low)
    t = 0.15 + 0.85 * min(max(t, 0.0), 1.0)
    light, dark = (215, 238, 215), (0, 95, 30)
    return tuple(round(a + (b - a) * t) for a, b in zip(light, dark))


def render(fields: list[PixelField], path: str | Path, cell: int | None = None) -> tuple[int, int]:
    """Draw the fields side by side into a PNG; returns its (width, height)."""
    font = ImageFont.load_default()
    _, _, h, w = fields[0].magnitude.shape
    cell = cell or max(8, min(32, 320 // max(h, w)))
    pad, header, legend_h = 12, 34, 16 * len(LEGEND) + 8
    panel_w, panel_h = w * cell, h * cell
    width = pad + len(fields) * (panel_w + pad)
    width = max(width, 330)
    height = pad + header + panel_h + pad + legend_h
    picture = Image.new("RGB", (width, height), COLOURS["background"])
    draw = ImageDraw.Draw(picture)
    for i, field in enumerate(fields):
        x0, y0 = pad + i * (panel_w + pad), pad + header
        draw.text((x0, pad), field.name[: max(8, panel_w // 6)], fill=COLOURS["text"], font=font)
        summary = f"pixel {field.pixel}: coverage {field.coverage:.3f}" + (f", {field.leaks} LEAKS" if field.leaks else "")
        draw.text((x0, pad + 14), summary, fill=COLOURS["text"], font=font)
        cells = field.cells()
        logs = [math.log(s) for row in cells for kind, s in row if kind in ("seen", "partial") and s > 0]
        low, high = (min(logs), max(logs)) if logs else (0.0, 0.0)
        for r, row in enumerate(cells):
            for c, (kind, strength) in enumerate(row):
                colour = _shade(strength, low, high) if kind == "seen" else COLOURS[kind]
                box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell - 1, y0 + (r + 1) * cell - 1)
                draw.rectangle(box, fill=colour, outline=COLOURS["grid"] if cell >= 8 else None)
    y = pad + header + panel_h + pad
    for kind, label in LEGEND:
        colour = _shade(1.0, 0.0, 0.0) if kind == "seen" else COLOURS[kind]
        draw.rectangle((pad, y, pad + 10, y + 10), fill=colour, outline=COLOURS["grid"])
        draw.text((pad + 16, y), label, fill=COLOURS["text"], font=font)
        y += 16
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return picture.size
