"""Locally masked PixelCNN's released checkpoints (github: ajayjain/lmconv) into specs/lmconv.json and its variants.

Registered by this plugin through arblocks' importer hook (``arblocks import lmconv SOURCE --spec SPEC``). The
original's modules with parameters, in the order its forward runs them, are the spec's blocks with parameters:

    u_init                                  the mask-A locally masked convolution
    up_layers.i.u_stream.j  (i < 3, j < R)  gated resnets; after the first two scales downsize_u_stream.i (dilated)
    down_layers.i.u_stream.j (R, R+1, R+1)  gated resnets with skips; after the first two upsize_u_stream.i (dilated)
    nin_out                                 the head's 1x1 projection

Inside a gated resnet the names agree (``conv_input``, ``nin_skip``, ``conv_out``). The released models normalize
with PONO and so carry no weight norm on their convolutions (``weight``, ``bias``); the skip's ``nin`` and
``nin_out`` are weight-normalized Linears. The head: PixelCNN++'s mixture layout (reordered as for PixelCNN++), or,
for binarized MNIST (``--binarize``), two logits per pixel, which a categorical head over 1 bit takes as they are.
The PONO layers have no parameters.
"""

from __future__ import annotations

import re
from typing import Literal

import torch

from arblocks import hookimpl
from arblocks.weights.importer import ImporterConfig, Source, WeightImporter, WeightImportError, port_mixture_order, steps_with_parameters, take_conv


class LmconvConfig(ImporterConfig):
    """Locally masked PixelCNN (ajayjain/lmconv): its released .pth checkpoints (CIFAR-10, MNIST grayscale and binarized), into specs/lmconv.json and variants."""

    type: Literal["lmconv"] = "lmconv"


class LmconvImporter(WeightImporter):
    Config = LmconvConfig

    def convert(self, source: Source, model, target):
        theirs = original_modules(source)
        ours = [(f"layers.{s.index}", "gated" if s.type == "lm_gated_resnet" else "conv") for s in steps_with_parameters(model)]
        if [k for _, k in theirs] != [k for _, k in ours]:
            raise WeightImportError(f"the spec has {len(ours)} blocks with parameters and the checkpoint {len(theirs)} modules; the checkpoint's "
                                    f"nr_resnet is {sum(n.startswith('up_layers.0.') for n, _ in theirs)}: the spec's repeats must match it")
        out: dict[str, torch.Tensor] = {}
        for (their, kind), (mine, _) in zip(theirs, ours):
            if kind == "gated":
                take_conv(source, target, out, f"{their}.conv_input", f"{mine}.conv_input")
                if f"{mine}.nin_skip.conv.bias" in target:
                    take_conv(source, target, out, f"{their}.nin_skip.lin_a", f"{mine}.nin_skip")
                take_conv(source, target, out, f"{their}.conv_out", f"{mine}.conv_out")
            else:
                take_conv(source, target, out, their, mine)
        head = model.head
        channels = model.image.channels
        # PixelCNN++'s mixture layout, reordered; or, binarized, two logits per pixel as the categorical head takes them
        order = port_mixture_order(channels, head.k) if hasattr(head, "k") else list(range(target["head.project.conv.bias"].shape[0]))
        part: dict[str, torch.Tensor] = {}
        take_conv(source, target, part, "nin_out.lin_a", "head.project")
        index = torch.tensor(order)
        out.update({name: tensor[index] for name, tensor in part.items()})  # every tensor of a 1x1 projection is indexed by output first
        return out


def original_modules(source: Source) -> list[tuple[str, str]]:
    """The original's modules with parameters in the order its forward runs them (R read from the names)."""
    ups = {int(m[1]) for n in source.names("up_layers.0.u_stream.") if (m := re.match(r"up_layers\.0\.u_stream\.(\d+)\.", n))}
    r = max(ups) + 1 if ups else 0
    order = [("u_init", "conv")]
    for i in range(3):
        order += [(f"up_layers.{i}.u_stream.{j}", "gated") for j in range(r)]
        if i < 2:
            order += [(f"downsize_u_stream.{i}", "conv")]
    for i, count in enumerate((r, r + 1, r + 1)):
        order += [(f"down_layers.{i}.u_stream.{j}", "gated") for j in range(count)]
        if i < 2:
            order += [(f"upsize_u_stream.{i}", "conv")]
    return order


@hookimpl
def arblocks_register_importers(register):
    register(LmconvImporter)
