"""Small tensor helpers shared by blocks."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from einops import rearrange

from .streams import Causal


def channel_groups(n: int, groups: int) -> torch.Tensor:
    """Group index of each of ``n`` channels when they are split into ``groups`` sub-pixel groups."""
    return torch.arange(n) * groups // n


def keeps_groups(channel_counts: Sequence[int], groups: int) -> bool:
    """Whether a group-wise concatenation of streams with these channel counts keeps every channel's group."""
    return groups == 1 or all(n % groups == 0 for n in channel_counts)


def grouped_cat(tensors: Sequence[torch.Tensor], groups: int) -> torch.Tensor:
    """Concatenate ``[B, n_k, H, W]`` maps on channels so that sub-pixel group g of the result holds group g of each input.

    Falls back to a plain concatenation when a channel count is not divisible by ``groups``
    (the caller then treats the groups as mixed, see :func:`ungrouped`).
    """
    if len(tensors) == 1:
        return tensors[0]
    if not keeps_groups([t.shape[1] for t in tensors], groups):
        return torch.cat(list(tensors), dim=1)
    parts = [rearrange(t, "b (g c) h w -> b g c h w", g=groups) for t in tensors]
    return rearrange(torch.cat(parts, dim=2), "b g c h w -> b (g c) h w")


def label_vectors(table: torch.nn.Embedding, labels: torch.Tensor) -> torch.Tensor:
    """The learned vector of each image's label, ``[B, D]``. A label stream holds one class index per image (``[B]``)
    or several (``[B, K]``, e.g. one per transformation kind of Distribution Augmentation, indexing one joint table):
    their rows are summed."""
    vectors = table(labels)
    return vectors if vectors.dim() == 2 else vectors.sum(1)


def ungrouped(state: Causal) -> Causal:
    """The state of a stream whose channel groups were mixed."""
    return Causal.CURRENT if state in (Causal.STRICT, Causal.INCLUSIVE) else state


def checks_values(t: torch.Tensor) -> bool:
    """Whether a forward pass checks the values of an input tensor (levels and labels in range): in eager mode on the
    CPU, where that costs neither a device synchronisation nor a graph break. Under ``torch.compile`` and on an
    accelerator it is left to the data path (``arblocks.data`` converts every dataset to the spec's levels), unless
    ``ARBLOCKS_CHECK_VALUES=1`` asks for it everywhere outside compiled code (debugging)."""
    if torch.compiler.is_compiling():
        return False
    return t.device.type == "cpu" or os.environ.get("ARBLOCKS_CHECK_VALUES") == "1"


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``'s semantics (each value kept with probability 1 - p, independently, and scaled by 1 / (1 - p)).
    On the CPU the keep mask comes from one float32 uniform per value compared with ``p``, which is 2.4x faster there
    than ``F.dropout``'s Bernoulli draws (docs/performance.md); elsewhere, and under compilation, ``F.dropout``."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return torch.nn.functional.dropout(x, p, True)
    keep = torch.rand(x.shape, dtype=torch.float32) >= p
    return x * keep.to(x.dtype) * (1.0 / (1.0 - p))
