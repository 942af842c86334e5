"""Training: Adam with exponential decay, EMA weights, gradient clipping, data-dependent init, atomic checkpoints,
exact resume, non-finite-loss guard, progress bar, CSV metrics and a PNG plot; single process or torchrun DDP.

Reproducibility: the order of the data is a permutation drawn from (seed, epoch), and every step reseeds the random
generator from (seed, step, rank), so a resumed run takes exactly the steps an uninterrupted one would have taken.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from torch.nn.parallel import DistributedDataParallel

from ..causality.check import require_causal
from ..causality.precision import precisions_for
from ..causality.record import covers, describe, fingerprint
from ..core import augmentation
from ..core.layers import Conv, data_dependent_init
from ..core.model import ARModel
from ..data import ImageData, load_data
from ..data.loading import load_raw
from ..data.palette import fit_palette
from ..data.transforms import Transforms, apply_batch
from ..spec.errors import ArblocksError
from ..spec.models import ModelSpec, StagedSpec
from ..staged.stages import StagedModel, build_any
from . import checkpoint as ckpt
from .callbacks import Callback, Run, TensorBoard
from .distributed import World, all_sum, barrier, setup, teardown
from .precision import Precision, autocast, compiled, grad_scaler, in_memory_format, to_memory_format

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
PLOT = "bits_per_dim.png"
FIELDS = ["step", "split", "bits_per_dim", "nats_per_image", "images_per_s", "lr", "skipped_steps", "weights"]


#: the largest seed (torch's generators take 64-bit seeds; the per-step seeds are derived from it and stay in range)
MAX_SEED = 2**32 - 1


class TrainingError(ArblocksError):
    """Training cannot go on (non-finite losses, a run folder that would be overwritten, a mismatched resume)."""


class TrainConfig(BaseModel):
    """Everything that defines a training run besides the spec and the data."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # --lr inf or nan would skip every step
    steps: int = Field(1000, gt=0, description="Optimizer steps in all.")
    batch_size: int = Field(16, gt=0, description="Global batch size (split evenly over the ranks).")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate.")
    lr_decay: float = Field(0.999995, gt=0, le=1, description="Learning rate factor per step (PixelCNN++'s exponential decay).")
    betas: tuple[float, float] = Field((0.95, 0.9995), description="Adam betas (PixelCNN++, PixelSNAIL).")
    grad_clip: float | None = Field(100.0, gt=0, description="Clip the gradient norm to this (None: no clipping).")
    ema_decay: float = Field(0.9995, ge=0, lt=1, description="Polyak averaging of the weights, used for evaluation and sampling.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the data order, the initialization and every step's randomness.")
    eval_every: int = Field(500, gt=0, description="Evaluate test bits/dim with the EMA weights every N steps (and at the end).")
    eval_batch_size: int = Field(64, gt=0, description="Images per forward pass when evaluating the test split.")
    eval_limit: int | None = Field(None, gt=0, description="Evaluate on the first N test images only (quicker evaluations in a short run; the figures are of that subset).")
    checkpoint_every: int = Field(100, gt=0, description="Write the checkpoint every N steps (and at the end).")
    log_every: int = Field(10, gt=0, description="Write a train row to metrics.csv every N steps.")
    max_bad_steps: int = Field(10, gt=0, description="Stop after this many consecutive steps with a non-finite loss or gradient.")
    init: bool = Field(True, description="Data-dependent initialization of weight-normalized layers.")
    binarize: bool = Field(False, description="Binarize the images (threshold at half the range).")
    data_key: str | None = Field(None, description="Array name for npz sources.")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto.")
    precision: Precision = Field(
        "fp32", validation_alias=AliasChoices("precision", "dtype"),
        description="bf16 or fp16 run the model under autocast (the weights and the loss stay float32; fp16 scales the loss); "
        "on a GPU bf16 is the one to use (docs/training.md).",
    )
    compile: bool = Field(False, description="torch.compile the model for the training steps: minutes of compilation, repaid only by long runs (on the CPU the small specs step at 0.75-1.1x eager, docs/performance.md).")
    compile_backend: str = Field("inductor", description="torch.compile's backend (inductor; eager or aot_eager only trace, for debugging).")
    channels_last: bool = Field(False, description="Keep the weights and the images in the channels-last memory format (faster convolutions on GPUs).")
    check: bool = Field(True, description="Check the spec's causality before training, as `arblocks build` does (run.json says how it went); off: --no-check.")
    tensorboard: bool = Field(False, description="Also write TensorBoard event files to RUN_DIR/tensorboard: train and test bits/dim, nats, learning rate, images/s, skipped steps, and a grid of samples at every evaluation (needs the tensorboard package).")
    tensorboard_samples: int = Field(4, ge=0, le=64, description="Images sampled (cached engine, averaged weights) for TensorBoard at every evaluation; 0: none.")
    palette: int | None = Field(
        None, gt=1, le=65536, description="Quantize RGB data to this many k-means colours fitted on the training pixels, one token per pixel (Image GPT)."
    )
    transforms: Transforms = Field(default_factory=Transforms, description="Transforms of the data's levels: grayscale, crop, resize, bits (both "
                                   "splits, once) and a random crop and flip (each training batch) (docs/training.md).")


@dataclass
class RunResult:
    step: int
    train_bits_per_dim: float
    test_bits_per_dim: float | None
    test_nats_per_image: float | None
    skipped_steps: int
    #: a spec with stages: each stage's test figures at the last evaluation (see :func:`stage_figures`)
    test_stages: list[dict] | None = None
    run_dir: Path | None = None
    #: the trained model with the averaged (EMA) weights, in evaluation mode
    model: torch.nn.Module | None = field(default=None, repr=False)


class Objective(torch.nn.Module):
    """Nats per image [B] of a model of one stage or several: the one call a training step makes (through DDP), so
    that every parameter the loss uses takes part in the step's forward pass."""

    def __init__(self, model: ARModel | StagedModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, **conditioning) -> torch.Tensor:
        return self.model.nll(x, **conditioning)


def pick_device(name: str, world: World) -> torch.device:
    """The device a name means (auto: CUDA when there is one), refused with a clear error when this machine lacks it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise TrainingError(f"unknown device '{name}': use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: this machine has no CUDA device (torch {torch.__version__}); use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TrainingError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainingError(f"--device {name}: this machine has no MPS device; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"--device {name}: arblocks runs on cpu, cuda or mps devices")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    return device


def check_backend(name: str) -> None:
    """Refuse a torch.compile backend this torch does not have, before any work."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if name not in known:
        raise TrainingError(f"--compile-backend {name!r} is not one of this torch's backends: {', '.join(sorted(known))}")


def check_run_dir(run_dir: Path, config: TrainConfig) -> None:
    """Refuse a run folder that cannot be written (or a TensorBoard folder that is a file), before any work."""
    folder = run_dir
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise TrainingError(f"cannot make the run folder {run_dir}: {folder} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrainingError(f"cannot write the run folder {run_dir}: {folder} is not writable")
    board = run_dir / "tensorboard"
    if config.tensorboard and board.exists() and not board.is_dir():
        raise TrainingError(f"--tensorboard writes to {board}, which is a file")


def conditioning_for(model: ARModel | StagedModel, data: ImageData, index: torch.Tensor, device, augment: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """The provided inputs of a batch: class labels from the data, and Distribution Augmentation's choices (the
    identity, or the transformations ``augment`` names; a training step replaces them with its draws)."""
    cond = {}
    for name in model.provided_inputs:
        if model.inputs[name].config.type == "augmentation":
            cond[name] = augmentation.chosen(model, len(index), augment).to(device)
            continue
        if model.inputs[name].config.type != "class_label":
            raise TrainingError(f"input '{name}' ({model.inputs[name].config.type}) needs data that the sources do not provide; training supports class_label inputs")
        if data.labels is None:
            raise TrainingError(f"input '{name}' is a class label, but the data has no labels")
        cond[name] = data.labels[index].to(device)
    return cond


@torch.no_grad()
def evaluate(model: ARModel | StagedModel, data: ImageData, batch_size: int, device, world: World | None = None, precision: Precision = "fp32",
             augment: dict[str, int] | None = None, progress: bool = False, channels_last: bool = False) -> tuple[float, float]:
    """Exact (bits per dimension, nats per image) over every image of ``data``: each rank takes the images
    rank, rank + world, ... (no padding, no image counted twice) and the sums are reduced. ``augment`` (a model with
    Distribution Augmentation): the images under those transformation choices, and the model told so; default the identity."""
    sums, count = _nats_sums(model, data, batch_size, device, world or World(), precision, augment, progress, channels_last)
    return sum(sums) / (count * model.image.dims * math.log(2)), sum(sums) / count


@torch.no_grad()
def evaluate_stages(model: StagedModel, data: ImageData, batch_size: int, device, world: World | None = None, precision: Precision = "fp32",
                    progress: bool = False, channels_last: bool = False) -> tuple[float, float, list[dict]]:
    """As :func:`evaluate`, with each stage's figures too (:func:`stage_figures`), from the same pass."""
    sums, count = _nats_sums(model, data, batch_size, device, world or World(), precision, progress=progress, channels_last=channels_last)
    total = sum(sums)
    return total / (count * model.image.dims * math.log(2)), total / count, stage_figures(model, [s / count for s in sums])


def stage_figures(model: StagedModel, nats: list[float]) -> list[dict]:
    """Each stage's share of a staged model's likelihood: nats per image, bits per dimension of the stage's own
    variable, and its part of the image's bits per dimension (the parts add up to the total)."""
    image_dims = model.image.dims * math.log(2)
    return [{"stage": name, "view": view.config.model_dump(), "nats_per_image": value, "bits_per_dim_own": value / (view.output.dims * math.log(2)),
             "bits_per_image_dim": value / image_dims} for name, view, value in zip(model.names, model.views, nats)]


def _nats_sums(model, data: ImageData, batch_size: int, device, world: World, precision: Precision, augment: dict[str, int] | None = None,
               progress: bool = False, channels_last: bool = False) -> tuple[list[float], float]:
    """Summed nats over this rank's share of ``data`` and all ranks: one sum per stage (one for a single model), and the image count."""
    model.eval()
    staged = isinstance(model, StagedModel)
    indices = torch.arange(world.rank, len(data), world.size)
    sums = [0.0] * (len(model.stages) if staged else 1)
    bar = _progress(progress and world.main, len(indices), 0, unit="image")
    for start in range(0, len(indices), batch_size):
        index = indices[start : start + batch_size]
        x = in_memory_format(data.images[index].to(device), channels_last)
        if augment:
            x = augmentation.apply(model, x, augmentation.chosen(model, len(x), augment))
        with autocast(device, precision):
            cond = conditioning_for(model, data, index, device, augment)
            parts = model.stage_nll(x, **cond) if staged else [model.nll(x, **cond)]
        sums = [total + float(part.double().sum()) for total, part in zip(sums, parts)]
        if bar is not None:
            bar.update(len(index))
    if bar is not None:
        bar.close()
    *sums, count = all_sum(world, *sums, float(len(indices)), device=device)
    return sums, count


@dataclass
class Window:
    """The running sums of the train rows' logging window: the summed loss and the count of the steps taken in it,
    and the images since the window (or the resume) started, for the rate."""

    loss: float = 0.0
    steps: int = 0
    images_since_start: int = 0

    def add(self, loss: float, images: int) -> None:
        self.loss += loss
        self.steps += 1
        self.images_since_start += images

    @classmethod
    def restored(cls, state: dict | None, rank: int) -> Window:
        """The window a checkpoint saved (summed over the ranks), held by rank 0, so that the next row's sum over the
        ranks counts it once."""
        saved = (state or {}).get("window") or {}
        return cls(float(saved.get("loss", 0.0)), int(saved.get("steps", 0))) if rank == 0 else cls()


class EMA:
    """Polyak averages of the parameters (and copies of the buffers), with a warm-up: the decay at step t is
    min(decay, (1 + t) / (10 + t)), so that early averages follow the weights instead of the initialization."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].lerp_(v, 1 - decay)
            else:
                self.state[k].copy_(v)


def has_weight_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, Conv) and m.weight_normed for m in model.modules())


def train(
    spec: ModelSpec | StagedSpec,
    data_source: str | ImageData,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    test_source: str | ImageData | None = None,
    progress: bool = True,
    model: ARModel | StagedModel | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> RunResult:
    """The training loop of ``arblocks train`` and :func:`arblocks.fit` (which normalizes its arguments and calls
    this). ``model``: train this model of ``spec`` in place instead of building one."""
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    if test_source is None and not isinstance(data_source, str):
        raise TrainingError("data given in memory needs its test split too (test_data=...)")
    path = run_dir / CHECKPOINT
    state = None
    if resume:
        state = ckpt.load(path)
        if "optimizer" not in state:
            raise TrainingError(f"{path} was saved from Python (save_checkpoint), without an optimizer's state: it cannot be resumed; "
                                "train its model further with fit(model, ...) in a new run folder")
        if state["spec_hash"] != ckpt.spec_hash(spec):
            raise TrainingError(f"{path} was trained from another spec (spec hash {state['spec_hash'][:12]}, this spec {ckpt.spec_hash(spec)[:12]})")
        config = TrainConfig.model_validate({**state["config"], "steps": max(config.steps, state["config"]["steps"])})
        if state["step"] >= config.steps:
            raise TrainingError(f"the run in {run_dir} has finished its {state['step']} steps; pass --steps above {state['step']} to train it further")
    elif path.exists():
        raise TrainingError(f"{run_dir} already holds a run ({CHECKPOINT}); continue it with --resume or choose another --out")

    device = pick_device(config.device, World())
    if config.compile:
        check_backend(config.compile_backend)
    check_run_dir(run_dir, config)
    world = setup(device)
    device = pick_device(config.device, world)
    try:
        return _run(spec, model, data_source, test_source or data_source, run_dir, config, state, world, device, progress, list(callbacks))
    finally:
        teardown(world)


def _run(spec, model, data_source, test_source, run_dir: Path, config: TrainConfig, state, world: World, device, progress: bool,
         callbacks: list[Callback]) -> RunResult:
    if config.batch_size % world.size:
        raise TrainingError(f"the batch size {config.batch_size} does not split evenly over {world.size} processes")
    if config.palette and isinstance(spec, StagedSpec):
        raise TrainingError("--palette turns pixels into tokens, which the views of a spec with stages do not take")
    palette = None
    if state is not None and "palette" in state:
        palette = state["palette"]
    elif config.palette:
        palette = fit_palette(load_raw(data_source, "train", config.data_key, transforms=config.transforms).images, config.palette, seed=config.seed)
    train_data = load_data(data_source, "train", spec.image, config.binarize, config.data_key, palette=palette, transforms=config.transforms,
                           crop_later=True)
    test_data = load_data(test_source, "test", spec.image, config.binarize, config.data_key, palette=palette, transforms=config.transforms)
    if config.eval_limit is not None and config.eval_limit < len(test_data):
        test_data = ImageData(test_data.images[: config.eval_limit], None if test_data.labels is None else test_data.labels[: config.eval_limit], test_data.bits)
    if len(train_data) < config.batch_size:
        raise TrainingError(f"the training split has {len(train_data)} images, fewer than one batch of {config.batch_size}")

    if model is None:
        torch.manual_seed(config.seed)
        model = build_any(spec)
    causality = "skipped (--no-check): the spec was not checked for causality, so its figures may come from a leaking model"
    record = None
    if config.check:  # on the model just built (on the CPU still): the check builds only its small copy
        wanted = fingerprint(spec, precisions_for(config.precision))
        if state is not None and covers(state.get("causality_record"), wanted):  # a resumed run, proven with this code
            record, causality = state["causality_record"], describe(state["causality_record"])
            if world.main:
                print(causality, file=sys.stderr)
        else:
            causality = require_causal(spec, "training", full=model, precisions=precisions_for(config.precision), device=device)
            record = {**wanted, "passed": True}
    model = model.to(device)
    objective = Objective(model)
    conditioning_for(model, train_data, torch.arange(1), device)  # fail early on inputs the data cannot feed
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_decay)
    start = 0
    skipped = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, skipped = state["step"], state["skipped_steps"]
    elif config.init and has_weight_norm(model):
        index = _batch_indices(config, len(train_data), 0, world)
        with torch.random.fork_rng(devices=[]):
            model.eval()
            data_dependent_init(objective, train_data.images[index].to(device), **conditioning_for(model, train_data, index, device))
    to_memory_format(model, config.channels_last)
    ema = EMA(model, config.ema_decay)
    if state is not None:
        ema.state = {k: v.to(device) for k, v in state["ema"].items()}
    # after the init: DDP broadcasts rank 0's weights once. Buffers are constants built from the spec (masks, attention
    # masks of up to [heads, N, N]), the same on every rank, so they are not re-broadcast before every forward pass.
    net = DistributedDataParallel(objective, broadcast_buffers=False) if world.distributed else objective
    net = compiled(net, config.compile, fullgraph=not world.distributed, backend=config.compile_backend)  # DDP splits graphs at its buckets
    scaler = grad_scaler(device, config.precision)
    if state is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])

    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):  # left by a process killed between write and rename
            stale.unlink()
        _trim_metrics(run_dir / METRICS, start)
        (run_dir / "spec.json").write_text(json.dumps(json.loads(ckpt.spec_json(spec)), indent=2) + "\n")  # the effective spec (after --set)
        (run_dir / "run.json").write_text(json.dumps({"spec": json.loads(ckpt.spec_json(spec)), "data": _described(data_source),
                                                      "test_data": _described(test_source),
                                                      "config": config.model_dump(mode="json"),
                                                      "causality_check": causality}, indent=2))
    bar = _progress(progress and world.main, config.steps, start)
    if config.tensorboard:
        callbacks = [TensorBoard(config.tensorboard_samples, config.seed), *callbacks]
    callbacks = callbacks if world.main else []
    run = Run(run_dir, spec, config, model, palette)
    for callback in callbacks:
        callback.on_start(run, start)
    # the logging window's running sums: saved with the checkpoint, so a run resumed inside a window logs the
    # uninterrupted run's average (its images per second count the images since the resume)
    window, window_start = Window.restored(state, world.rank), time.perf_counter()
    bad_in_a_row = 0
    last = {"train": float("nan"), "test": None, "nats": None, "stages": None}
    step = start
    averaged = None
    for step in range(start + 1, config.steps + 1):
        torch.manual_seed((config.seed * 1_000_003 + step) * world.size + world.rank)
        model.train()
        index = _batch_indices(config, len(train_data), step - 1, world)
        x = train_data.images[index]
        if config.transforms.per_batch:  # random crop and flip, drawn from this step's seed
            x = apply_batch(x, config.transforms)
        x = in_memory_format(x.to(device, non_blocking=True), config.channels_last)
        cond = conditioning_for(model, train_data, index, device)
        if getattr(model, "transformations", None):  # Distribution Augmentation: each image under its drawn choices
            choices = augmentation.draw(model, len(x))
            x = augmentation.apply(model, x, choices)
            if (name := augmentation.conditioning_name(model)) is not None:
                cond[name] = choices.to(device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, config.precision):
            nats = net(x, **cond)  # [B], float32 (heads compute their likelihood in float32)
        loss = nats.sum() / (len(x) * spec.image.dims * math.log(2))
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # fp16: the true gradients, for the norm and its clipping
        norm = _gradient_norm(model, config.grad_clip)
        loss_value = loss.item()
        if not (math.isfinite(norm) and math.isfinite(all_sum(world, loss_value, device=device)[0])):
            # a skipped step changes no weight; its scheduled log row, evaluation and checkpoint still happen below
            optimizer.zero_grad(set_to_none=True)
            skipped += 1
            scaler.update()  # fp16: an overflow of the scaled gradients lowers the scale; that is not a bad step
            if not (scaler.is_enabled() and math.isfinite(loss_value)):
                bad_in_a_row += 1
                if bad_in_a_row >= config.max_bad_steps:
                    raise TrainingError(
                        f"the loss or gradient was not finite for {bad_in_a_row} steps in a row (up to step {step}); the weights of step "
                        f"{step - bad_in_a_row} are intact in {run_dir / CHECKPOINT} as of its last write. Lower --lr or check the data"
                    )
        else:
            bad_in_a_row = 0
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            ema.update(model, step)
            window.add(loss_value, config.batch_size)
        if step % config.log_every == 0 or step == config.steps:
            total, count = all_sum(world, window.loss, float(window.steps), device=device)
            elapsed = time.perf_counter() - window_start
            last["train"] = total / count if count else float("nan")  # a window of skipped steps only: no figure
            rate = window.images_since_start / elapsed if elapsed > 0 else float("nan")
            _write_metrics(world, run_dir, step, "train", last["train"], None, rate, schedule.get_last_lr()[0], skipped)
            for callback in callbacks:
                callback.on_log(run, step, {"bits_per_dim": last["train"], "images_per_s": rate, "lr": schedule.get_last_lr()[0], "skipped_steps": skipped})
            if bar is not None:
                bar.set_postfix(bpd=f"{last['train']:.3f}", img_s=f"{rate:.1f}", skipped=skipped)
            window, window_start = Window(), time.perf_counter()
        if step % config.eval_every == 0 or step == config.steps:
            averaged = _ema_model(model, ema, averaged)
            if isinstance(averaged, StagedModel):
                last["test"], last["nats"], last["stages"] = evaluate_stages(averaged, test_data, config.eval_batch_size, device, world, config.precision)
            else:
                last["test"], last["nats"] = evaluate(averaged, test_data, config.eval_batch_size, device, world, config.precision)
            _write_metrics(world, run_dir, step, "test", last["test"], last["nats"], None, schedule.get_last_lr()[0], skipped)
            for callback in callbacks:
                callback.on_evaluate(run, step, {"bits_per_dim": last["test"], "nats_per_image": last["nats"], "stages": last["stages"]}, averaged)
        if step % config.checkpoint_every == 0 or step == config.steps:
            window_sums = all_sum(world, window.loss, float(window.steps), device=device)  # every rank's share of the window
            _save(world, run_dir, spec, model, ema, optimizer, schedule, step, skipped, config, palette, scaler, window_sums, record)
            for callback in callbacks:
                callback.on_checkpoint(run, step, run_dir / CHECKPOINT)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if world.main:
        plot_metrics(run_dir / METRICS, run_dir / PLOT, spec.name)
    barrier(world)
    if skipped and skipped == step - start and step > start:
        raise TrainingError(f"every step of the run ({start + 1} to {step}) was skipped: the loss or gradient was never finite, so the "
                            f"weights never changed. Lower --lr or check the data (metrics.csv and {CHECKPOINT} in {run_dir} record it)")
    result = RunResult(step, last["train"], last["test"], last["nats"], skipped, last["stages"], run_dir, _ema_model(model, ema, averaged).eval())
    for callback in callbacks:
        callback.on_end(run, result)
    return result


def _described(source) -> str | None:
    """A data source as run.json records it (data given in memory has no source to evaluate it from again)."""
    return source if isinstance(source, str) else None


def _batch_indices(config: TrainConfig, n: int, step: int, world: World) -> torch.Tensor:
    """This rank's share of the global batch of a step: a slice of the permutation of the step's epoch."""
    per_epoch = n // config.batch_size
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
    batch = order[position * config.batch_size : (position + 1) * config.batch_size]
    local = config.batch_size // world.size
    return batch[world.rank * local : (world.rank + 1) * local]


def _gradient_norm(model: torch.nn.Module, clip: float | None) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if clip is None:
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))) if params else 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, clip))


def _ema_model(model: ARModel | StagedModel, ema: EMA, averaged: ARModel | StagedModel | None) -> ARModel | StagedModel:
    """The model with the EMA weights: ``averaged`` (the copy of an earlier evaluation) or a copy of ``model`` made once
    per run, not a new build per evaluation."""
    if averaged is None:
        averaged = copy.deepcopy(model)
        for parameter in averaged.parameters():
            parameter.grad = None  # a copy of the weights, not of the last step's gradients
    averaged.load_state_dict(ema.state)
    return averaged


def _save(world: World, run_dir: Path, spec, model, ema: EMA, optimizer, schedule, step: int, skipped: int, config: TrainConfig, palette=None,
          scaler=None, window_sums: tuple[float, float] | None = None, record: dict | None = None) -> None:
    if world.main:
        state = {
            "format": ckpt.FORMAT,
            "spec": ckpt.spec_json(spec),
            "spec_hash": ckpt.spec_hash(spec),
            "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},  # contiguous: channels-last runs too
            "ema": {k: v.detach().cpu().contiguous() for k, v in ema.state.items()},
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "step": step,
            "skipped_steps": skipped,
            "config": config.model_dump(mode="json"),
            "world_size": world.size,
            **({"palette": palette} if palette is not None else {}),
            **({"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}),
            **({"window": {"loss": window_sums[0], "steps": window_sums[1]}} if window_sums is not None else {}),
            # the passed check's fingerprint, beside the spec it proves (arblocks.causality.record)
            **({"causality_record": record} if record is not None else {}),
        }
        ckpt.save_atomic(state, run_dir / CHECKPOINT)
    barrier(world)


def _progress(enabled: bool, total: int, initial: int, unit: str = "step"):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit=unit, dynamic_ncols=True)


def _write_metrics(world: World, run_dir: Path, step, split, bpd, nats, rate, lr, skipped) -> None:
    if not world.main:
        return
    path = run_dir / METRICS
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({"step": step, "split": split, "bits_per_dim": f"{bpd:.6f}", "nats_per_image": "" if nats is None else f"{nats:.4f}",
                         "images_per_s": "" if rate is None else f"{rate:.2f}", "lr": f"{lr:.6g}", "skipped_steps": skipped,
                         "weights": "raw" if split == "train" else "ema"})  # train rows: the steps' own weights; test rows: the averages


def _complete_row(row: dict) -> bool:
    """A metrics row written whole (a process killed mid-write leaves a torn last line)."""
    try:
        int(row["step"]), float(row["bits_per_dim"])
    except (TypeError, ValueError, KeyError):
        return False
    return row.get("split") in ("train", "test") and row.get("skipped_steps") not in (None, "")


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop the rows written after the checkpoint (they will be written again)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if _complete_row(r) and int(r["step"]) <= step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def plot_metrics(metrics: Path, out: Path, title: str) -> None:
    """Train and test bits/dim against steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list[int], list[float]]] = {}
    with metrics.open(newline="") as f:
        for row in csv.DictReader(f):
            steps, values = series.setdefault(row["split"], ([], []))
            steps.append(int(row["step"]))
            values.append(float(row["bits_per_dim"]))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for split, (steps, values) in sorted(series.items()):
        ax.plot(steps, values, marker="o" if split == "test" else None, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per dimension")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
