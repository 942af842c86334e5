"""Training from Python: :func:`fit` is ``arblocks train``'s loop (the command calls it), with the same options,
checkpoints, resume, metrics, TensorBoard and progress bar, for a spec, a spec file or a model built in Python, on a
named source or on images in memory; :func:`save_checkpoint` writes a model built in Python as a checkpoint that
``arblocks eval`` and ``arblocks sample`` take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from ..core.model import ARModel
from ..data import ImageData
from ..data.base import bits_of, to_nchw
from ..spec.errors import Problem, SpecError
from ..spec.models import ModelSpec, StagedSpec
from ..staged.stages import StagedModel
from . import checkpoint as ckpt
from .callbacks import Callback
from .loop import CHECKPOINT, RunResult, TrainConfig, TrainingError, train


def as_data(data: Any, name: str) -> str | ImageData:
    """A source string, :class:`ImageData`, or uint8 images ([N, H, W], [N, H, W, C] or [N, C, H, W]; a tensor or an
    array), optionally with labels as a pair ``(images, labels)``."""
    if isinstance(data, str | ImageData) or data is None:
        return data
    if isinstance(data, Path):
        raise TrainingError(f"{name}: give a source string (e.g. 'npz:{data}') rather than a path")
    labels = None
    if isinstance(data, tuple) and len(data) == 2:
        data, labels = data
    if isinstance(data, torch.Tensor):
        data = data.cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise TrainingError(f"{name}: expected a source string, ImageData, or uint8 images as a tensor or an array, got {type(data).__name__}")
    images = to_nchw(data, name)
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels), dtype=torch.long).reshape(-1)
        if len(labels) != len(images):
            raise TrainingError(f"{name}: {len(labels)} labels for {len(images)} images")
    return ImageData(images, labels, bits_of(images))


def as_spec_and_model(model_or_spec: Any) -> tuple[ModelSpec | StagedSpec, ARModel | StagedModel | None]:
    """A spec (or a spec file's path, or a parsed dict) and no model, or a built model and its spec."""
    if isinstance(model_or_spec, ARModel | StagedModel):
        return model_or_spec.spec, model_or_spec
    if isinstance(model_or_spec, ModelSpec | StagedSpec):
        return model_or_spec, None
    from ..spec.reading import read_spec_file
    from ..staged.stages import parse_any

    if isinstance(model_or_spec, str | Path):
        return parse_any(read_spec_file(model_or_spec), source=str(model_or_spec)), None
    if isinstance(model_or_spec, dict):
        return parse_any(model_or_spec, source="spec"), None
    raise TrainingError(f"fit takes a model, a spec or a spec file's path, got {type(model_or_spec).__name__}")


def train_config(config: TrainConfig | dict | None = None, **options) -> TrainConfig:
    """A :class:`TrainConfig` from a config and/or keyword options (``steps=300, lr=2e-3``); bad values are one
    :class:`SpecError` naming each option."""
    values = {**(config.model_dump() if isinstance(config, TrainConfig) else dict(config or {})), **options}
    try:
        return TrainConfig(**values)
    except ValidationError as error:
        from ..spec.reading import pydantic_problems

        raise SpecError([Problem(p.path.strip("/").replace("/", "."), p.type, p.message) for p in pydantic_problems(error, (), TrainConfig, "train")],
                        source="training options") from None


def fit(
    model_or_spec: Any,
    data: Any,
    out: str | Path,
    *,
    test_data: Any = None,
    resume: bool = False,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    progress: bool = True,
    config: TrainConfig | dict | None = None,
    **options,
) -> RunResult:
    """Train a model as ``arblocks train`` does, and return the result (``result.model``: the averaged weights).

    ``model_or_spec``: a spec, a spec file's path, or a model built in Python (trained in place; pass one built
    right after ``torch.manual_seed(seed)`` to get the command's initialization). ``data`` and ``test_data``: a source
    string (``"digits"``, ``"mnist"``, ``"npz:PATH"``, ``"hf:NAME"``: the test split comes from it too), or images in
    memory (``ImageData``, a uint8 tensor or array, or ``(images, labels)``; then ``test_data`` is needed). ``out``:
    the run folder (checkpoint.pt, metrics.csv, run.json, bits_per_dim.png). ``options``: :class:`TrainConfig`'s
    fields (``steps=300, batch_size=32, lr=2e-3, transforms={"resize": 16}``...). ``callbacks``: :class:`Callback`
    objects called at each log row, evaluation, checkpoint and at the end.
    """
    spec, model = as_spec_and_model(model_or_spec)
    run_config = train_config(config, **options)
    return train(spec, as_data(data, "data"), out, run_config, resume=resume, test_source=as_data(test_data, "test_data"),
                 progress=progress, model=model, callbacks=callbacks)


def save_checkpoint(model: ARModel | StagedModel, path: str | Path, *, palette: torch.Tensor | None = None) -> Path:
    """Write ``model`` (built in Python, trained or not) as a checkpoint that ``arblocks eval``/``sample`` and
    :func:`arblocks.load_checkpoint` take: its spec and its weights (as both the raw and the averaged ones, step 0).
    It cannot be resumed (it has no optimizer state); train it further with ``fit(model, ...)``."""
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / CHECKPOINT
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = {"format": ckpt.FORMAT, "spec": ckpt.spec_json(model.spec), "spec_hash": ckpt.spec_hash(model.spec), "model": weights, "ema": weights,
             "step": 0, "skipped_steps": 0, "config": TrainConfig().model_dump(mode="json"), "saved_from": "python",
             **({"palette": palette} if palette is not None else {})}
    ckpt.save_atomic(state, path)
    return path
