"""Callbacks of a training run: what :func:`arblocks.fit` (and so ``arblocks train``) calls at each logged step,
evaluation, checkpoint and at the end. TensorBoard logging is one; :class:`SaveSamples` writes sample grids.

A callback subclasses :class:`Callback` and overrides the methods it needs. They run on the main process only,
after the loop's own work for that step (the checkpoint is on disk when ``on_checkpoint`` runs), and must not
change the model: the averaged-weights model they receive is the one the next evaluation reuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core import augmentation
from ..data.palette import colours
from ..sampling.grid import grid_image, save_grid
from ..spec.errors import ArblocksError


@dataclass
class Run:
    """What callbacks see of the run: its folder, spec, options (``TrainConfig``), training model (raw weights),
    and the palette of a token model."""

    run_dir: Path
    spec: Any
    config: Any
    model: torch.nn.Module
    palette: torch.Tensor | None = None


class Callback:
    def on_start(self, run: Run, step: int) -> None:
        """Before the first step (``step``: the step resumed from, 0 for a new run)."""

    def on_log(self, run: Run, step: int, row: dict) -> None:
        """After a train row of metrics.csv was written (``row``: bits_per_dim, images_per_s, lr, skipped_steps)."""

    def on_evaluate(self, run: Run, step: int, row: dict, model: torch.nn.Module) -> None:
        """After an evaluation (``row``: bits_per_dim, nats_per_image; ``model``: the averaged weights, in eval mode)."""

    def on_checkpoint(self, run: Run, step: int, path: Path) -> None:
        """After the checkpoint was written."""

    def on_end(self, run: Run, result: Any) -> None:
        """After the last step (``result``: the :class:`RunResult`)."""


def draw_samples(model, count: int, seed: int, palette=None) -> tuple[torch.Tensor, int]:
    """``count`` samples (cached engine) from ``seed`` and their number of levels: identity augmentation, example
    conditioning for other inputs, colours for a palette model."""
    device = next(model.parameters()).device
    conditioning = {k: (augmentation.chosen(model, count) if model.inputs[k].config.type == "augmentation"  # the identity
                        else model.inputs[k].example(count, torch.Generator().manual_seed(seed))).to(device) for k in model.provided_inputs}
    images = model.sample(count, conditioning=conditioning, generator=torch.Generator(device).manual_seed(seed)).cpu()
    if palette is not None:
        return colours(images, palette), 256
    return images, model.image.levels


class SaveSamples(Callback):
    """A PNG grid of ``count`` samples from the averaged weights at every evaluation: RUN_DIR/samples/step_N.png."""

    def __init__(self, count: int = 16, seed: int = 0, folder: str = "samples"):
        self.count, self.seed, self.folder = count, seed, folder
        self.written: list[Path] = []

    def on_evaluate(self, run, step, row, model):
        images, levels = draw_samples(model, self.count, self.seed, run.palette)
        path = run.run_dir / self.folder / f"step_{step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(images, path, levels)
        self.written.append(path)


class TensorBoard(Callback):
    """TensorBoard event files in RUN_DIR/tensorboard (events after the resumed step are dropped): train and test
    bits/dim, nats, learning rate, images/s, skipped steps, and a grid of ``samples`` images at every evaluation."""

    def __init__(self, samples: int = 4, seed: int = 0):
        self.samples, self.seed, self.writer = samples, seed, None

    def on_start(self, run, step):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ArblocksError(f"--tensorboard needs the tensorboard package ({error}): pip install tensorboard") from None
        self.writer = SummaryWriter(str(run.run_dir / "tensorboard"), purge_step=step + 1 if step else None)

    def on_log(self, run, step, row):
        for name in ("bits_per_dim", "images_per_s", "lr", "skipped_steps"):
            self.writer.add_scalar(f"train/{name}", row[name], step)

    def on_evaluate(self, run, step, row, model):
        self.writer.add_scalar("test/bits_per_dim", row["bits_per_dim"], step)
        self.writer.add_scalar("test/nats_per_image", row["nats_per_image"], step)
        if self.samples:
            images, levels = draw_samples(model, self.samples, self.seed, run.palette)
            self.writer.add_image("samples", grid_image(images, levels), step)
        self.writer.flush()

    def on_end(self, run, result):
        self.writer.close()
