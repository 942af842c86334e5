"""PixelCNN++ in PyTorch (github: pclucas14/pixel-cnn-pp) into specs/pixelcnn_pp.json.

The port's model runs its modules in this order, which is the spec's order of blocks with parameters:

    u_init, ul_init.0, ul_init.1                      down_shifted 2x3, down_shifted 1x3, down_right_shifted 2x1
    up_layers.i.{u,ul}_stream.j  (i < 3, j < R)       gated_resnet, down_shifted / down_right_shifted
    downsize_{u,ul}_stream.i     (i < 2)              the stride-2 convolutions
    down_layers.i.{u,ul}_stream.j (j < R, R+1, R+1)   gated_resnet with the skips
    upsize_{u,ul}_stream.i       (i < 2)              the transposed convolutions
    nin_out                                           the logistic mixture's 1x1 projection

so the importer pairs the two lists, checking each pair's kind (a gated_resnet over rows above with ``u_stream``, a
stride-2 down_right_shifted convolution with ``downsize_ul_stream``, ...), and maps names inside a pair:
``conv_input`` -> ``conv1``, ``nin_skip.lin_a`` -> ``nin_aux``, ``conv_out`` -> ``conv2``, ``conv``/``deconv`` -> the
block's convolution. Layouts: a ``nin`` is a weight-normalized Linear (``[out, in]``, here a 1x1 convolution);
``weight_norm`` of a transposed convolution normalizes over its dim 0, the input channels, where arblocks normalizes
per output channel (the effective weight is carried over, see :mod:`arblocks.weights.importer`); the mixture's
parameters come per channel as (means, log-scales, coefficients) after the K logits, where the head takes all means,
then all log-scales, then the coefficients of the pairs (1,0), (2,0), (2,1) (the port's coefficient slot of channel
c is pair c). Dropout is the port's ``Dropout2d`` (whole channels) where the spec drops single values: the same
function in evaluation mode, where imported weights are used.
"""

from __future__ import annotations

import re
from typing import Literal

import torch

from ...core.hookspecs import hookimpl
from ..importer import ImporterConfig, Source, WeightImporter, WeightImportError, assign_conv, port_mixture_order, steps_with_parameters, take_conv

#: a block type of the spec -> the kind the port's module must have
KINDS = {"down_shifted_conv": "conv down_shifted", "down_right_shifted_conv": "conv down_right_shifted",
         "down_shifted_deconv": "deconv down_shifted", "down_right_shifted_deconv": "deconv down_right_shifted"}


class PixelCNNppPyTorchConfig(ImporterConfig):
    """PixelCNN++ as ported to PyTorch by pclucas14/pixel-cnn-pp (a torch.save of the model's state_dict), into specs/pixelcnn_pp.json."""

    type: Literal["pixelcnn_pp_pytorch"] = "pixelcnn_pp_pytorch"


class PixelCNNppPyTorch(WeightImporter):
    Config = PixelCNNppPyTorchConfig

    def convert(self, source: Source, model, target):
        theirs = original_modules(source)
        ours = [(f"layers.{s.index}", _kind(s.type, model.layers[s.index])) for s in steps_with_parameters(model)]
        if [k for _, k in theirs] != [k for _, k in ours]:
            raise WeightImportError(_difference(theirs, ours))
        out: dict[str, torch.Tensor] = {}
        for (their, kind), (mine, _) in zip(theirs, ours):
            if kind.startswith("gated"):
                take_conv(source, target, out, f"{their}.conv_input.conv", f"{mine}.conv1")
                if f"{mine}.nin_aux.conv.bias" in target:
                    take_conv(source, target, out, f"{their}.nin_skip.lin_a", f"{mine}.nin_aux")
                take_conv(source, target, out, f"{their}.conv_out.conv", f"{mine}.conv2")
            else:
                take_conv(source, target, out, f"{their}.{kind.split()[0]}", f"{mine}.conv")
        _head(source, target, out, model)
        return out


def original_modules(source: Source) -> list[tuple[str, str]]:
    """The port's modules with parameters in the order its forward runs them, with their kinds; R (nr_resnet) is
    read from the names."""
    ups = {int(m[1]) for n in source.names("up_layers.0.u_stream.") if (m := re.match(r"up_layers\.0\.u_stream\.(\d+)\.", n))}
    nr_resnet = max(ups) + 1 if ups else 0
    order = [("u_init", "conv down_shifted"), ("ul_init.0", "conv down_shifted"), ("ul_init.1", "conv down_right_shifted")]
    for i in range(3):
        for j in range(nr_resnet):
            order += [(f"up_layers.{i}.u_stream.{j}", "gated down_shifted"), (f"up_layers.{i}.ul_stream.{j}", "gated down_right_shifted")]
        if i < 2:
            order += [(f"downsize_u_stream.{i}", "conv down_shifted"), (f"downsize_ul_stream.{i}", "conv down_right_shifted")]
    for i, count in enumerate((nr_resnet, nr_resnet + 1, nr_resnet + 1)):
        for j in range(count):
            order += [(f"down_layers.{i}.u_stream.{j}", "gated down_shifted"), (f"down_layers.{i}.ul_stream.{j}", "gated down_right_shifted")]
        if i < 2:
            order += [(f"upsize_u_stream.{i}", "deconv down_shifted"), (f"upsize_ul_stream.{i}", "deconv down_right_shifted")]
    return order


def _kind(block_type: str, layer) -> str:
    if block_type == "gated_resnet":
        return f"gated {layer.config.conv}"
    return KINDS.get(block_type, block_type)


def _difference(theirs, ours) -> str:
    nr_resnet = sum(name.startswith("up_layers.0.u_stream.") for name, _ in theirs)
    fix = (f"the checkpoint's nr_resnet is {nr_resnet}: the spec's up-pass repeats need {nr_resnet} gated_resnet pairs and the "
           f"down pass {nr_resnet}, then {nr_resnet + 1} per scale (docs/pretrained.md)")
    for i, ((their, a), (mine, b)) in enumerate(zip(theirs, ours)):
        if a != b:
            return f"the spec's block {i} with parameters ({mine}) is a {b}, where the checkpoint's module {i} ({their}) is a {a}; {fix}"
    return f"the spec has {len(ours)} blocks with parameters and the checkpoint {len(theirs)} modules; {fix}"


def _head(source: Source, target, out, model) -> None:
    """nin_out -> the logistic mixture's projection, its output channels reordered to the head's layout."""
    head = model.head
    order = port_mixture_order(model.image.channels, head.k)
    v, g, bias = (source.take(f"nin_out.lin_a.{n}") for n in ("weight_v", "weight_g", "bias"))
    if v is None or g is None or bias is None:
        return
    if v.shape[0] != len(order):
        source.misshaped.append(f"nin_out.lin_a.weight_v {tuple(v.shape)} (the head's {head.k} components need {len(order)} outputs)")
        return
    index = torch.tensor(order)
    assign_conv(target, out, "head.project", g=g[index].reshape(-1, 1, 1, 1), v=v[index][:, :, None, None], bias=bias[index])


@hookimpl
def arblocks_register_importers(register):
    register(PixelCNNppPyTorch)
