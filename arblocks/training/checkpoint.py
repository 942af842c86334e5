"""Checkpoints: written atomically, loaded without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` file of plain containers and tensors only (``weights_only=True`` loads it): the spec
as JSON and its hash, the model's weights, the EMA weights, the optimizer and schedule state, the step and the
training configuration. Writing goes to a temporary file in the same folder, is flushed and fsynced, then renamed
over the target (and the folder fsynced), so a process killed at any moment leaves either the old checkpoint or the
new one, never a torn file.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..spec.errors import ArblocksError
from ..spec.models import spec_hash, spec_json  # noqa: F401 - the checkpoint's spec and hash (re-exported)
from ..staged.stages import build_any, parse_any

FORMAT = "arblocks-checkpoint/1"


class CheckpointError(ArblocksError):
    """A checkpoint is missing, unsafe, corrupt, or does not match."""


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors and plain containers, and loading it could run "
            f"arbitrary code ({str(error).splitlines()[0][:160]})"
        ) from None
    except Exception as error:  # noqa: BLE001 - corrupt or foreign files get a clear message
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an arblocks checkpoint (no '{FORMAT}' format marker)")
    return state


def spec_of(state: dict[str, Any]):
    """The spec embedded in a checkpoint (a :class:`ModelSpec`, or a spec with stages), validated again and checked
    against its hash."""
    spec = parse_any(json.loads(state["spec"]), source="checkpoint spec")
    if spec_hash(spec) != state.get("spec_hash"):
        raise CheckpointError("the checkpoint's spec does not match its hash: the file was edited or is corrupt")
    return spec


def load_checkpoint(path: str | Path, weights: str = "ema"):
    """A trained model and what the run recorded: ``(model, info)``, the model in evaluation mode with its EMA weights
    (``weights="ema"``, the default) or its last step's (``"raw"``); ``info`` has ``step``, ``config`` (the training
    options), ``skipped_steps``, ``spec`` (the validated spec) and ``palette`` when the run quantized colours."""
    model, state = load_model(path, weights)
    info = {"step": state["step"], "config": state["config"], "skipped_steps": state["skipped_steps"], "spec": model.spec,
            **({"palette": state["palette"]} if "palette" in state else {})}
    return model, info


def load_model(path: str | Path, weights: str = "ema"):
    """The model of a checkpoint (an :class:`arblocks.ARModel`, or an :class:`arblocks.StagedModel` for a spec with
    stages), with its EMA weights (``weights="ema"``, the default) or its raw weights."""
    state = load(path)
    spec = spec_of(state)
    model = build_any(spec)
    if weights not in ("ema", "raw"):
        raise CheckpointError(f"weights must be 'ema' or 'raw', got {weights!r}")
    tensors = state["ema" if weights == "ema" else "model"]
    for name, tensor in tensors.items() if isinstance(tensors, dict) else ():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path}: the {weights} weights hold NaN or infinite values in '{name}' (the run diverged); "
                "evaluate or sample an earlier checkpoint, or retrain with a lower learning rate"
            )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit the spec's model: {str(error).splitlines()[0]}") from None
    return model.eval(), state
