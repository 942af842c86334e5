"""Importers of released weights: an original implementation's checkpoint, mapped onto a spec's model.

An importer is a registered type (kind ``importer``, hook ``arblocks_register_importers``), so a plugin adds formats
as it adds blocks. It reads the original's file (:meth:`WeightImporter.read`: tensors only, never an arbitrary
pickle) and maps the original's parameter names and layouts onto the model's state dict
(:meth:`WeightImporter.convert`), taking each source tensor through :class:`Source`, which records what is missing,
misshaped or left over. :func:`import_weights` refuses, naming the tensors, an import where anything is, and checks
the result against the model's own state dict as a folder's weights are checked (:mod:`arblocks.weights.folder`).

Weight normalization is the usual layout difference: the same effective weight ``g * v / ||v||`` can be stored
with the norm over another dimension (PyTorch's ``weight_norm`` takes dim 0 even for a transposed convolution, whose
dim 0 is the input channels; arblocks normalizes per output channel). :func:`assign_conv` copies ``g`` and ``v`` as
they are where the layouts agree (exact) and otherwise stores the effective weight as ``v`` with ``g = ||v||`` per
output channel, which gives the same weight up to one rounding of float32.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from ..core.plugins import get_registry
from ..core.registry import base_of
from ..spec.reading import read_spec_file
from ..staged.stages import build_any, parse_any
from ..training.fit import save_checkpoint
from .folder import PretrainedError, fit_state


class ImporterConfig(BaseModel):
    """The base of an importer's Config: its ``type`` (a Literal) is the format's name."""

    model_config = ConfigDict(extra="forbid")
    type: str


class WeightImportError(PretrainedError):
    """Released weights that do not fit the spec they are imported into."""


class Source:
    """The original's tensors by name. :meth:`take` hands one over (reshaped if asked) and records a missing or
    misshaped one; :meth:`problems` lists those and the tensors never taken."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.taken: set[str] = set()
        self.missing: list[str] = []
        self.misshaped: list[str] = []

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self, prefix: str = "") -> list[str]:
        return [n for n in self.tensors if n.startswith(prefix)]

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor | None:
        """The tensor ``name``, checked against ``shape`` if given; None (and recorded) if it is absent or misshaped."""
        if name not in self.tensors:
            self.missing.append(name)
            return None
        self.taken.add(name)
        tensor = self.tensors[name]
        if shape is not None and tuple(tensor.shape) != tuple(shape):
            self.misshaped.append(f"{name} {tuple(tensor.shape)} (the spec needs {tuple(shape)})")
            return None
        return tensor

    def problems(self) -> list[str]:
        left = [n for n in self.tensors if n not in self.taken]
        return [f"{what}: {', '.join(names[:6])}{f' and {len(names) - 6} more' if len(names) > 6 else ''}"
                for what, names in (("missing in the source", self.missing), ("wrong shape", self.misshaped),
                                    ("in the source but not mapped to the spec", left)) if names]


@base_of("importer")
class WeightImporter:
    """An original's released weights -> a spec's state dict. Subclasses set ``Config`` (its ``type`` is the
    format's name, its docstring the one-line description) and implement :meth:`convert`; :meth:`read` reads a
    PyTorch checkpoint of tensors by default."""

    Config: type[ImporterConfig] = ImporterConfig

    def __init__(self, weights: str = "ema"):
        #: where a checkpoint holds averaged weights besides the raw ones (a TensorFlow EMA): which to take
        self.weights = weights

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return torch_tensors(path)

    def palette(self, path: Path) -> torch.Tensor:
        """The model's colour palette [clusters, 3] (0-255) from the original's file, for formats that have one."""
        raise WeightImportError(f"the format '{self.Config.model_fields['type'].default}' has no palette to import")

    def convert(self, source: Source, model, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model's state dict from ``source`` (``target`` is the model's own state dict: names, shapes, dtypes).
        Problems are recorded in ``source`` (or raised as :class:`WeightImportError` for a structure that differs)."""
        raise NotImplementedError


def torch_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch checkpoint, loaded with ``weights_only=True`` (tensors and plain containers; anything
    else is refused, not run): the state dict itself, or the one under ``state_dict``, ``model_state_dict``, ``model``
    or ``net``; DataParallel's ``module.`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise WeightImportError(f"no such file: {path}")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise WeightImportError(f"{path}: refused: it holds objects other than tensors and plain containers, and loading it "
                                f"could run code ({str(error).splitlines()[0][:160]})") from None
    except Exception as error:  # noqa: BLE001 - foreign or corrupt files get a clear message
        raise WeightImportError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {str(error)[:160]})") from None
    for key in ("state_dict", "model_state_dict", "model", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightImportError(f"{path}: no state dict of tensors found (a dict of tensors, or one under 'state_dict' or 'model')")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _norm_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    dims = [d for d in range(t.dim()) if d != dim]
    return torch.linalg.vector_norm(t, dim=dims, keepdim=True)


def effective_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``g * v / ||v||`` in float64, the norm over every dimension but the one ``g`` spans."""
    dim = next((d for d, n in enumerate(g.shape) if n != 1), 0)
    v = v.double()
    return g.double().reshape([-1 if d == dim else 1 for d in range(v.dim())]) * v / _norm_except(v, dim)


def assign_conv(target: dict[str, torch.Tensor], out: dict[str, torch.Tensor], prefix: str, *, g=None, v=None, weight=None, bias=None) -> None:
    """Fill ``out`` with an arblocks ``Conv``'s tensors at ``prefix`` (``layers.3.conv``): from the source's weight
    norm pair ``g``/``v`` or plain ``weight`` (any layout with the same elements in the same order: a Linear's
    ``[out, in]`` for a 1x1 convolution), and ``bias``."""
    normed = f"{prefix}.conv.parametrizations.weight.original0" in target
    if normed:
        g_name, v_name = f"{prefix}.conv.parametrizations.weight.original0", f"{prefix}.conv.parametrizations.weight.original1"
        shape = target[v_name].shape
        if g is not None and v is not None and g.numel() == target[g_name].numel() and _same_gain_axis(g, v, target[g_name], shape):
            out[g_name], out[v_name] = g.reshape(target[g_name].shape).clone(), v.reshape(shape).clone()  # the same layout: exact
        else:
            w = (effective_weight(g, v) if g is not None else weight.double()).reshape(shape)
            dim = next(d for d, n in enumerate(target[g_name].shape) if n != 1)
            out[v_name], out[g_name] = w.float(), _norm_except(w, dim).reshape(target[g_name].shape).float()
    else:
        name = f"{prefix}.conv.weight"
        out[name] = (effective_weight(g, v).float() if g is not None else weight).reshape(target[name].shape).clone()
    if f"{prefix}.conv.bias" in target:
        out[f"{prefix}.conv.bias"] = bias.reshape(target[f"{prefix}.conv.bias"].shape).clone()


def _same_gain_axis(g: torch.Tensor, v: torch.Tensor, target_g: torch.Tensor, target_shape) -> bool:
    """Whether the source normalizes over the same axis as the target (the gain's axis, counted in the target's layout)."""
    source_axis = next((d for d, n in enumerate(g.shape) if n != 1), 0)
    target_axis = next((d for d, n in enumerate(target_g.shape) if n != 1), 0)
    return source_axis == target_axis and tuple(v.reshape(target_shape).shape) == tuple(target_shape) and v.dim() == len(target_shape)


def port_mixture_order(channels: int, k: int) -> list[int]:
    """PixelCNN++'s layout of its mixture parameters (the TF original's, kept by its PyTorch ports and lmconv):
    for each output of arblocks' logistic_mixture head (K logits, C x K means, C x K log-scales, then K coefficients
    per pair (1,0), (2,0), (2,1)), the index of the original's output that holds it (K logits, then per channel K
    means, K log-scales and, for RGB, K coefficients; the coefficient slot of channel c is pair c)."""
    if channels not in (1, 3):
        raise WeightImportError(f"PixelCNN++'s code models 1 or 3 channels, not {channels}")
    per_channel = 3 if channels == 3 else 2
    port = lambda c, slot, i: k + c * per_channel * k + slot * k + i  # noqa: E731
    order = list(range(k))
    order += [port(c, 0, i) for c in range(channels) for i in range(k)]  # means
    order += [port(c, 1, i) for c in range(channels) for i in range(k)]  # log-scales
    if channels == 3:
        order += [port(pair, 2, i) for pair in range(3) for i in range(k)]  # pairs (1,0), (2,0), (2,1): the port's slots of channels 0, 1, 2
    return order


def steps_with_parameters(model) -> list:
    """The model's steps whose blocks hold parameters, in the order they run: what an original's layers map onto."""
    return [step for step in model.steps if any(True for _ in model.layers[step.index].parameters())]


def take_conv(source: Source, target, out, their: str, mine: str) -> None:
    """The source's convolution or Linear at ``their`` (PyTorch names: ``weight_g``/``weight_v`` of ``weight_norm``,
    or ``weight``; and ``bias``) into the arblocks ``Conv`` at ``mine``; a Linear's ``[out, in]`` becomes a 1x1
    kernel. What is missing or misshaped is recorded in ``source``."""
    normed = f"{mine}.conv.parametrizations.weight.original1" in target
    shape = target[f"{mine}.conv.parametrizations.weight.original1" if normed else f"{mine}.conv.weight"].shape
    if f"{their}.weight" in source:
        g, v = None, source.take(f"{their}.weight")
    else:
        v, g = source.take(f"{their}.weight_v"), source.take(f"{their}.weight_g")
        if g is None:
            return
    bias = source.take(f"{their}.bias", tuple(target[f"{mine}.conv.bias"].shape)) if f"{mine}.conv.bias" in target else None
    if v is None or (bias is None and f"{mine}.conv.bias" in target):
        return
    if v.numel() != shape.numel():
        source.misshaped.append(f"{their}.weight{'_v' if g is not None else ''} {tuple(v.shape)} (the spec's {mine} needs {tuple(shape)})")
        return
    if v.dim() == 2:  # a Linear: [out, in] -> [out, in, 1, 1]
        v, g = v[:, :, None, None], None if g is None else g.reshape(-1, 1, 1, 1)
    if g is None:
        assign_conv(target, out, mine, weight=v, bias=bias)
    else:
        assign_conv(target, out, mine, g=g, v=v, bias=bias)


def import_weights(format: str, source: str | Path, spec, out: str | Path | None = None, registry=None, weights: str = "ema",
                   palette: str | Path | None = None):
    """Import the released weights at ``source`` (in ``format``, a registered importer) into ``spec`` (a spec, or
    the path of one): the model, in evaluation mode; written as an arblocks checkpoint to ``out`` if given (then
    `arblocks eval`, `sample` and `export` take it). ``weights``: ``ema`` (the averaged weights, where the checkpoint
    holds them) or ``raw``; ``palette``: the original's colour clusters, stored in the checkpoint. Raises :class:`WeightImportError` naming every tensor that is
    missing, misshaped or left over."""
    registry = registry or get_registry()
    entry = registry.importers.get(format)
    if entry is None:
        raise WeightImportError(f"unknown weight format '{format}': registered formats are {', '.join(sorted(registry.importers)) or 'none'} "
                                "(`arblocks blocks --kind importer`)")
    if isinstance(spec, (str, Path)):
        spec = parse_any(read_spec_file(spec), registry=registry, source=str(spec))
    model = build_any(spec, registry)
    if weights not in ("ema", "raw"):
        raise WeightImportError(f"weights must be 'ema' or 'raw', got {weights!r}")
    importer = entry.cls(weights)
    tensors = Source(importer.read(Path(source)))
    target = model.state_dict()
    state = importer.convert(tensors, model, target)
    problems = tensors.problems()
    if problems:
        raise WeightImportError(f"{source} ({format}) does not fit {getattr(spec, 'name', 'the spec')}: " + "; ".join(problems))
    fit_state(model, state, f"the weights imported from {source}")
    model.eval()
    colours = importer.palette(Path(palette)) if palette is not None else None
    if out is not None:
        save_checkpoint(model, out, palette=colours)
    return model
