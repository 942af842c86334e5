"""FlexAttention over a head group's mask: the ``flex`` kernel of ``transformer_block``.

``torch.nn.attention.flex_attention`` skips the blocks of the score matrix (``BLOCK`` x ``BLOCK`` positions) that a
block mask marks empty and applies the mask only inside partly kept ones. :class:`FlexMask` computes that block mask
once from the group's ``[N, N]`` boolean mask, so every registered pattern, a plugin's included, gets it from its mask
alone. The positions are put in the order that keeps fewer blocks, the sequence's or the grouped one of
:func:`arblocks.attention.tiled.grouped_order` (a column pattern is block-diagonal there). Its block tables are buffers,
so they move with the model, and the block mask is rebuilt from them at each call (cheap, and traceable by
``torch.compile``).

FlexAttention is compiled to be fast (``torch.compile``; eager mode computes every score). In torch 2.13 it has no
backward pass on the CPU: :class:`arblocks.attention.kernels.MaskedAttention` uses it there only without gradients
(evaluation, checks) and otherwise falls back to its ``auto`` path, which computes the same function.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

try:
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # torch before 2.5
    flex_attention = None

from ..spec.errors import BlockError
from .tiled import attend_in_order, grouped_order, occupied_tiles, reordered

BLOCK = 128
#: compile FlexAttention (its fast path); tests switch it off to run the eager reference on the CPU
COMPILE = True
_compiled = None


def available() -> bool:
    return flex_attention is not None


def kept_blocks(mask: torch.Tensor) -> int:
    """How many ``BLOCK`` x ``BLOCK`` blocks of an ``[N, N]`` mask keep a score."""
    return int(occupied_tiles(mask, BLOCK).sum())


def listed_blocks(num: torch.Tensor, indices: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``[nQ, nK]`` bool: the key blocks a block table (``num [1, 1, nQ]``, ``indices [1, 1, nQ, nK]``) lists per query block."""
    listed = torch.zeros(shape, dtype=torch.bool)
    for query_block in range(shape[0]):
        listed[query_block, indices[0, 0, query_block, : int(num[0, 0, query_block])].long()] = True
    return listed


def table_problem(mask: torch.Tensor, num, indices, full_num, full_indices) -> str | None:
    """What is wrong with block tables for ``mask`` (None: nothing). The compiled kernel computes only listed blocks and
    applies the mask only in the partial ones, so a block listed as full that the mask does not keep whole would attend
    where the pattern (and causality) forbid, and a kept score in an unlisted block would be lost. The causality checks
    run in float64, where FlexAttention runs its eager reference, which reads the mask and not the tables: this is
    their proof."""
    some = occupied_tiles(mask, BLOCK)
    whole = ~occupied_tiles(~mask, BLOCK)  # every score of the block (within the sequence) kept
    partial, full = listed_blocks(num, indices, some.shape), listed_blocks(full_num, full_indices, some.shape)
    for name, wrong in (("blocks listed as full that the mask does not keep whole", full & ~whole),
                        ("blocks with kept scores that no table lists", some & ~(partial | full)),
                        ("blocks listed both as partial and as full", partial & full)):
        if wrong.any():
            return f"{int(wrong.sum())} {name}, e.g. query block {wrong.nonzero()[0, 0].item()}, key block {wrong.nonzero()[0, 1].item()}"
    return None


class FlexMask(nn.Module):
    """The block mask of one head group's ``[N, N]`` mask, and FlexAttention over it."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        order = grouped_order(mask)
        if order is not None and kept_blocks(reordered(mask, order)) >= kept_blocks(mask):
            order = None
        ordered = reordered(mask, order)
        self.n = len(mask)
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("mask", ordered.clone(), persistent=False)  # its own copy: the mask_mod reads it
        blocks = create_block_mask(self.mask_mod(ordered), None, None, self.n, self.n, device="cpu", BLOCK_SIZE=BLOCK)
        for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
            self.register_buffer(name, getattr(blocks, name).contiguous(), persistent=False)
        problem = table_problem(self.mask, self.kv_num_blocks, self.kv_indices, self.full_kv_num_blocks, self.full_kv_indices)
        if problem:
            raise BlockError(f"FlexAttention's block tables disagree with the attention mask ({problem}); use kernel 'auto'", field="kernel")

    @staticmethod
    def mask_mod(mask: torch.Tensor):
        def keep(batch, head, query, key):
            return mask[query, key]

        return keep

    def block_mask(self):
        return BlockMask.from_kv_blocks(
            self.kv_num_blocks, self.kv_indices, self.full_kv_num_blocks, self.full_kv_indices,
            BLOCK_SIZE=BLOCK, mask_mod=self.mask_mod(self.mask), seq_lengths=(self.n, self.n),
        )

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k: [B, h, N, c]``, ``v: [B, h, N, c_v]`` -> ``[B, h, N, c_v]``."""
        if q.device.type == "cpu":  # no gradient is wanted here (see usable), but FlexAttention refuses any input that could take one
            q, k, v = q.detach(), k.detach(), v.detach()
        return attend_in_order(self.order, lambda *qkv: kernel(q)(*qkv, block_mask=self.block_mask()), q, k, v)


def kernel(q: torch.Tensor):
    """FlexAttention, compiled unless :data:`COMPILE` is off, a surrounding ``torch.compile`` compiles it anyway, or the
    inputs are float64 (the causality checks'), which the compiled kernel does not take: there its eager reference runs."""
    global _compiled
    if not COMPILE or torch.compiler.is_compiling() or q.dtype == torch.float64:
        return flex_attention
    if _compiled is None:
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


@contextmanager
def uncompiled():
    """FlexAttention's eager reference within (quick to start on the CPU, where compiling takes minutes)."""
    global COMPILE
    before, COMPILE = COMPILE, False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            yield
    finally:
        COMPILE = before


def usable(q: torch.Tensor) -> bool:
    """Can FlexAttention run here: anywhere but on the CPU when gradients are wanted (no backward there)."""
    return available() and not (q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad)
