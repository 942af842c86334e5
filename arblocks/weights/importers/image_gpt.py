"""Image GPT's TensorFlow original (github: openai/image-gpt) into specs/igpt_s.json and its sizes.

Names under the scope ``model``: ``wte`` [vocab, width] (the token table), ``sos`` [width] (the start vector the
sequence begins with), ``wpe`` [positions, width] (raster order), per block ``hN/ln_1/g``, ``hN/attn/{q,k,v}_proj`` and
``hN/attn/c_proj`` [heads, width/heads, width] (einsum weights), ``hN/ln_2/g``, ``hN/mlp/c_fc/w`` [width, 4 width]
and ``hN/mlp/c_proj/w`` [4 width, width], ``ln_f/g``, and ``wtet`` [vocab, width], the output projection. The
layouts move to PyTorch's Linear [out, in]: a head's rows of q, k and v are ``proj[h, e, :]``, stacked head by head
into the block's ``qkv``; ``c_proj`` becomes ``proj`` transposed; the MLP's matrices are transposed; the position
table is ``wpe`` transposed into [width, H, W]. The original's norms are RMS norms with gains only and its GELU is
x * sigmoid(1.702 x): the spec says so (``normalization: rms``, ``activation: gelu_sigmoid``), and the importer
refuses a spec that says otherwise. The classifier (``clf/wclf``) and optimizer slots are left out.

The colour clusters (``kmeans_centers.npy``, [512, 3] in [-1, 1]) are the model's palette: ``--palette`` stores them
in the checkpoint (as 127.5 (c + 1), the original's conversion to 0-255), so `eval` quantizes images and `sample`
draws colours as the original does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ...core.hookspecs import hookimpl
from ..importer import ImporterConfig, Source, WeightImporter, WeightImportError, steps_with_parameters
from ..tf_checkpoint import read_tf_checkpoint


class ImageGPTConfig(ImporterConfig):
    """Image GPT's TensorFlow original (openai/image-gpt): its checkpoint (read without TensorFlow) and colour clusters (--palette kmeans_centers.npy), into specs/igpt_s.json."""

    type: Literal["image_gpt_tf"] = "image_gpt_tf"


class ImageGPT(WeightImporter):
    Config = ImageGPTConfig

    def read(self, path: Path) -> dict[str, torch.Tensor]:
        left_out = ("model/clf/",)
        return {n: t for n, t in read_tf_checkpoint(path).items()
                if n.startswith("model/") and not n.startswith(left_out) and not n.endswith(("/Adam", "/Adam_1"))}

    def palette(self, path: Path) -> torch.Tensor:
        clusters = np.load(path, allow_pickle=False)
        if clusters.ndim != 2 or clusters.shape[1] != 3:
            raise WeightImportError(f"{path}: colour clusters must be [clusters, 3] in [-1, 1], got {list(clusters.shape)}")
        return torch.from_numpy(127.5 * (clusters.astype(np.float64) + 1.0)).float()

    def convert(self, source: Source, model, target):
        steps = steps_with_parameters(model)
        kinds = [s.type for s in steps]
        blocks = [s for s in steps if s.type == "transformer_block"]
        expected = ["token_embedding", "position_embedding", *["transformer_block"] * len(blocks), "layer_norm"]
        if kinds != expected:
            raise WeightImportError(f"the spec's blocks with parameters are {kinds}; Image GPT's are {expected}")
        for step in blocks + [steps[-1]]:
            config = model.layers[step.index].config
            if config.normalization != "rms" or getattr(config, "activation", "gelu_sigmoid") != "gelu_sigmoid":
                raise WeightImportError(f"{step.path}: Image GPT's blocks use RMS norms and x * sigmoid(1.702 x); the spec's "
                                        f"{step.type} says normalization '{config.normalization}'"
                                        + (f", activation '{config.activation}'" if hasattr(config, "activation") else ""))
        embed, position, norm = (f"layers.{steps[i].index}" for i in (0, 1, -1))
        out: dict[str, torch.Tensor] = {}

        def put(name: str, tensor: torch.Tensor | None) -> None:
            if tensor is None:
                return
            if tuple(tensor.shape) != tuple(target[name].shape):
                source.misshaped.append(f"{name}: the original's tensor gives {tuple(tensor.shape)}, the spec needs {tuple(target[name].shape)}")
                return
            out[name] = tensor.contiguous().clone()

        put(f"{embed}.table.weight", source.take("model/wte"))
        put(f"{embed}.start", source.take("model/sos"))
        wpe = source.take("model/wpe")
        if wpe is not None:
            channels, height, width = target[f"{position}.table"].shape
            put(f"{position}.table", wpe.t().reshape(channels, height, width) if wpe.numel() == channels * height * width else wpe)
        for n, step in enumerate(blocks):
            mine, their = f"layers.{step.index}", f"model/h{n}"
            put(f"{mine}.ln1.weight", source.take(f"{their}/ln_1/g"))
            put(f"{mine}.ln2.weight", source.take(f"{their}/ln_2/g"))
            q, k, v = (source.take(f"{their}/attn/{p}_proj") for p in "qkv")
            if q is not None and k is not None and v is not None:  # [heads, e, f] -> rows (h e) of a Linear [out, in]
                put(f"{mine}.qkv.weight", torch.cat([t.reshape(-1, t.shape[-1]) for t in (q, k, v)]))
            c = source.take(f"{their}/attn/c_proj")
            if c is not None:
                put(f"{mine}.proj.weight", c.reshape(-1, c.shape[-1]).t())
            for ours, theirs in (("fc", "c_fc"), ("fc_out", "c_proj")):
                w = source.take(f"{their}/mlp/{theirs}/w")
                if w is not None:
                    put(f"{mine}.{ours}.weight", w.t())
        put(f"{norm}.weight", source.take("model/ln_f/g"))
        wtet = source.take("model/wtet")
        if wtet is not None:
            put("head.project.conv.weight", wtet[:, :, None, None])
        return out


@hookimpl
def arblocks_register_importers(register):
    register(ImageGPT)
