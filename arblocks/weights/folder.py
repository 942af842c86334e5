"""The folder format: what `arblocks export` writes and :func:`load_folder` reads.

    spec.json           the spec (canonical JSON; `arblocks build spec.json` shows the model)
    model.safetensors   the weights (the EMA weights by default), with metadata: the format marker, the spec's hash,
                        which weights, the step, the run's data and options, the causality check's record
    palette.safetensors the colour palette, for a model of palette tokens
    README.md           the model card (:mod:`arblocks.weights.card`)

Loading validates the spec as any spec is validated (nothing in it is executed), reads tensors only (safetensors
holds no code; a pickle file is never opened), and refuses with a clear message a folder whose weights do not fit the
spec: a missing, extra or misshaped tensor, non-finite values, or a spec that is not the one the weights were
exported with (the metadata's spec hash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..core.plugins import arblocks_version
from ..spec.errors import ArblocksError
from ..spec.models import spec_hash, spec_json
from ..staged.stages import build_any, parse_any
from ..training import checkpoint as ckpt
from ..training.loop import CHECKPOINT
from .card import model_card

FORMAT = "arblocks-pretrained/1"
SPEC, WEIGHTS, PALETTE, CARD = "spec.json", "model.safetensors", "palette.safetensors", "README.md"
#: files that hold pickles: never loaded, named in the refusal
PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")


class PretrainedError(ArblocksError):
    """A pretrained folder (or Hub repository) is missing, unsafe, or does not fit its spec."""


def export(source: str | Path, out: str | Path, weights: str = "ema", force: bool = False) -> Path:
    """Write the folder format to ``out`` from a run folder (its checkpoint.pt, run.json and metrics.csv) or a
    checkpoint file; ``weights``: ``ema`` (default) or ``raw``. Refuses a non-empty ``out`` unless ``force``."""
    source, out = Path(source), Path(out)
    path = source / CHECKPOINT if source.is_dir() else source
    if weights not in ("ema", "raw"):
        raise PretrainedError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise PretrainedError(f"{out} exists and is not empty: choose another --out, or pass --force to overwrite its files")
    model, state = ckpt.load_model(path, weights)  # validated: the spec against its hash, the weights against the spec
    run = _run_of(path)
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in model.state_dict().items()}
    metadata = {"format": FORMAT, "spec_hash": spec_hash(model.spec), "weights": weights, "step": str(state["step"]),
                "arblocks": arblocks_version() or "", "run": json.dumps(run),
                "causality_record": json.dumps(state.get("causality_record"))}
    out.mkdir(parents=True, exist_ok=True)
    (out / SPEC).write_text(json.dumps(json.loads(spec_json(model.spec)), indent=2) + "\n")
    save_file(tensors, str(out / WEIGHTS), metadata=metadata)
    if "palette" in state:
        save_file({"palette": torch.as_tensor(state["palette"]).contiguous()}, str(out / PALETTE))
    (out / CARD).write_text(model_card(model, state, run, weights, path))
    return out


def _run_of(checkpoint: Path) -> dict[str, Any]:
    """What the run folder says about the run: its data sources and options (run.json) and the test bits/dim it
    logged last (metrics.csv); empty where the files are absent (a checkpoint saved from Python)."""
    run: dict[str, Any] = {}
    try:
        recorded = json.loads((checkpoint.parent / "run.json").read_text())
        run = {key: recorded.get(key) for key in ("data", "test_data", "config") if key in recorded}
    except (OSError, ValueError):
        pass
    try:
        import csv

        with open(checkpoint.parent / "metrics.csv", newline="") as f:
            tests = [r for r in csv.DictReader(f) if r.get("split") == "test" and r.get("bits_per_dim")]
        if tests:
            last = tests[-1]
            run["test_bits_per_dim"] = {"bits_per_dim": float(last["bits_per_dim"]), "step": int(last["step"]),
                                        "weights": last.get("weights") or "ema"}
    except (OSError, ValueError, KeyError):
        pass
    return run


def load_folder(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(model, info)`` from an exported folder: the model in evaluation mode; ``info`` has ``step``, ``weights``,
    ``run`` (data sources, options, logged bits/dim), ``causality_record``, ``config`` (the run's options) and
    ``palette`` when the model reads palette tokens. Raises :class:`PretrainedError` with what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedError(f"no such folder: {folder}")
    if not (folder / WEIGHTS).is_file():
        pickles = sorted(p.name for pattern in PICKLES for p in folder.glob(pattern))
        why = (f"; it holds {', '.join(pickles)}, which a pickle could make run code on loading, so they are never read"
               if pickles else "")
        raise PretrainedError(f"{folder}: no {WEIGHTS}{why}. Export a checkpoint with `arblocks export CHECKPOINT --out DIR`")
    if not (folder / SPEC).is_file():
        raise PretrainedError(f"{folder}: no {SPEC}: the weights need the spec they were trained with")
    try:
        data = json.loads((folder / SPEC).read_text())
    except (OSError, ValueError) as error:
        raise PretrainedError(f"{folder / SPEC}: not readable JSON ({error})") from None
    spec = parse_any(data, source=str(folder / SPEC))  # SpecError names the field's JSON path
    tensors, metadata = _read_tensors(folder / WEIGHTS)
    if metadata.get("spec_hash") not in (None, spec_hash(spec)):
        raise PretrainedError(f"{folder}: {SPEC} is not the spec these weights were exported with (its hash differs from the one "
                              f"{WEIGHTS} records): the spec was edited or belongs to other weights")
    model = build_any(spec)
    fit_state(model, tensors, f"{folder / WEIGHTS}")
    info = {"step": _int(metadata.get("step")), "weights": metadata.get("weights", "unknown"), "spec": model.spec,
            "run": _json(metadata.get("run"), {}), "causality_record": _json(metadata.get("causality_record"), None)}
    info["config"] = info["run"].get("config") or {}
    if (folder / PALETTE).is_file():
        palette, _ = _read_tensors(folder / PALETTE)
        if set(palette) != {"palette"}:
            raise PretrainedError(f"{folder / PALETTE}: expected one tensor named 'palette', found {sorted(palette)}")
        info["palette"] = palette["palette"]
    return model.eval(), info


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise PretrainedError(f"{path}: not a safetensors file ({str(error).splitlines()[0][:160]}); "
                              "arblocks reads weights only in that format, which holds tensors and no code") from None


def fit_state(model, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Load ``tensors`` into ``model`` or say exactly which tensors do not fit (``what`` names the weights)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    misshaped = [f"{k} {tuple(tensors[k].shape)} (the spec's model has {tuple(v.shape)})" for k, v in expected.items()
                 if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{what}: {', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"
                for what, names in (("missing", missing), ("not in the spec's model", extra), ("wrong shape", misshaped)) if names]
    if problems:
        raise PretrainedError(f"{what} does not fit the spec's model: " + "; ".join(problems))
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise PretrainedError(f"{what}: '{name}' holds NaN or infinite values")
    model.load_state_dict(tensors)


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _json(value, default):
    try:
        return json.loads(value) if value is not None else default
    except ValueError:
        return default
