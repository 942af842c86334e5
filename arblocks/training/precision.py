"""How a training or evaluation step runs: numeric precision, memory format and compilation.

``fp32`` runs everything in float32. ``bf16`` and ``fp16`` run the model under ``torch.autocast`` (the weights stay
float32, so checkpoints are the same whatever the precision); heads compute their likelihood in float32. ``fp16``
also scales the loss (``torch.amp.GradScaler``), since its gradients underflow otherwise; a step whose scaled
gradients overflow is skipped and the scale lowered, as the scaler does. ``channels_last`` keeps the weights and the
images in the channels-last memory format (faster convolutions on GPUs with tensor cores). ``compile`` wraps the
step's module in ``torch.compile`` (the model's forward pass has no graph break: ``fullgraph`` on a single process).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: Precision):
    """The autocast context of a precision (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (a disabled scaler, whose calls do nothing, otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def in_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch of images in the step's memory format."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def to_memory_format(module: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """The module's weights in the step's memory format (before DDP wraps it, whose gradient buckets follow the strides)."""
    return module.to(memory_format=torch.channels_last) if channels_last else module


def compiled(module: torch.nn.Module, compile: bool, fullgraph: bool, backend: str = "inductor"):
    """The module a step calls: compiled if asked (the module itself is unchanged, so its state dict keeps its keys)."""
    return torch.compile(module, fullgraph=fullgraph, backend=backend) if compile else module
