"""PixelCNN++'s TensorFlow original (github: openai/pixel-cnn, the released CIFAR-10 model at 2.92 bits/dim) into
specs/pixelcnn_pp.json.

The original names its layers by counters in the order it creates them, under the template scope ``model``:
``conv2d_N`` for every convolution (the shifted ones included), ``deconv2d_N`` for the transposed ones, ``dense_N``
for every network-in-network layer (a gated resnet's skip and the output). A gated resnet creates its first
convolution, its skip's ``dense`` when it has one, then its second convolution. That is the spec's order of blocks
with parameters, so the importer hands out the names by the same counters while walking the spec's blocks, and the
output ``dense`` last. Each layer holds ``V``, ``g`` and ``b``: weight normalization per output channel as arblocks
has it, so ``g`` and ``V`` are copied as they are (exact) after moving TensorFlow's layouts to PyTorch's:
convolution ``V`` [kh, kw, in, out] -> [out, in, kh, kw]; transposed convolution ``V`` [kh, kw, out, in] -> [in,
out, kh, kw]; dense ``V`` [in, out] -> [out, in, 1, 1]. The output's channels are reordered as for the PyTorch port
(:func:`arblocks.weights.importer.port_mixture_order`).

The checkpoint holds every variable twice: the trained value and its Polyak average
(``.../ExponentialMovingAverage``), which the paper evaluates; the importer takes the averages (``--weights ema``,
the default) or the raw values. Variables outside the ``model`` scope are the optimizer's (the original's Adam
keeps unnamed ``Variable_N`` slots) and are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from ...core.hookspecs import hookimpl
from ..importer import ImporterConfig, Source, WeightImporter, WeightImportError, assign_conv, port_mixture_order
from ..tf_checkpoint import read_tf_checkpoint

CONVS = ("down_shifted_conv", "down_right_shifted_conv")
DECONVS = ("down_shifted_deconv", "down_right_shifted_deconv")


class PixelCNNppTFConfig(ImporterConfig):
    """PixelCNN++'s TensorFlow original (openai/pixel-cnn): its checkpoint (PREFIX.index + PREFIX.data-*, read without TensorFlow), EMA weights by default, into specs/pixelcnn_pp.json."""

    type: Literal["pixelcnn_pp_tf"] = "pixelcnn_pp_tf"


class PixelCNNppTF(WeightImporter):
    Config = PixelCNNppTFConfig

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        return {name: t for name, t in read_tf_checkpoint(path).items() if name.startswith("model/")}

    def convert(self, source: Source, model, target):
        return convert_counted(self, source, model, target)


def convert_counted(importer: WeightImporter, source: Source, model, target) -> dict[str, torch.Tensor]:
    """The state dict of a model from a checkpoint of pixel-cnn's ``nn.py`` (PixelCNN++ and PixelSNAIL share it):
    its layers named by counters in creation order, walked with the spec's blocks (module docstring)."""
    counters = {"conv2d": 0, "deconv2d": 0, "dense": 0}

    def next_name(kind: str) -> str:
        counters[kind] += 1
        return f"model/{kind}_{counters[kind] - 1}"

    def layer(kind: str, mine: str, out) -> None:
        _layer(importer, source, target, out, next_name(kind), mine)

    out: dict[str, torch.Tensor] = {}
    for step in model.steps:
        mine, block = f"layers.{step.index}", model.layers[step.index]
        if step.type in CONVS:
            layer("conv2d", f"{mine}.conv", out)
        elif step.type in DECONVS:
            layer("deconv2d", f"{mine}.conv", out)
        elif step.type == "conv":  # a 1x1 convolution is the original's nin (a dense layer)
            layer("dense" if block.config.kernel_size in (1, [1, 1], (1, 1)) else "conv2d", f"{mine}.conv", out)
        elif step.type == "gated_resnet":
            kind = "dense" if block.config.conv == "nin" else "conv2d"
            layer(kind, f"{mine}.conv1", out)
            if f"{mine}.nin_aux.conv.bias" in target:
                layer("dense", f"{mine}.nin_aux", out)
            layer(kind, f"{mine}.conv2", out)
        elif any(True for _ in block.parameters()):
            raise WeightImportError(f"{step.path}: the original's nn.py has no layer for a {step.type} block")
    order = torch.tensor(port_mixture_order(model.image.channels, model.head.k))
    head: dict[str, torch.Tensor] = {}
    layer("dense", "head.project", head)
    out.update({name: tensor[order] for name, tensor in head.items()})  # a 1x1 projection's tensors are indexed by output first
    return out


def _take(importer: WeightImporter, source: Source, name: str) -> torch.Tensor | None:
    """The averaged value of ``name`` (or the raw one with ``weights="raw"``); both count as mapped."""
    average = f"{name}/ExponentialMovingAverage"
    raw = source.take(name)
    if average in source:
        averaged = source.take(average)
        return averaged if importer.weights == "ema" else raw
    return raw


def _layer(importer: WeightImporter, source: Source, target, out, their: str, mine: str) -> None:
    v, g, b = (_take(importer, source, f"{their}/{n}") for n in ("V", "g", "b"))
    if v is None or g is None or b is None:
        return
    v = v.permute(3, 2, 0, 1) if v.dim() == 4 else v.t()[:, :, None, None]  # conv and deconv: [kh, kw, a, b] -> [b, a, kh, kw]
    target_v = target[f"{mine}.conv.parametrizations.weight.original1"]
    target_g = target[f"{mine}.conv.parametrizations.weight.original0"]
    if tuple(v.shape) != tuple(target_v.shape) or g.numel() != target_g.numel():
        source.misshaped.append(f"{their}/V {tuple(v.shape)} in PyTorch's layout (the spec's {mine} needs {tuple(target_v.shape)})")
        return
    assign_conv(target, out, mine, g=g.reshape(target_g.shape), v=v.contiguous(), bias=b)


@hookimpl
def arblocks_register_importers(register):
    register(PixelCNNppTF)
