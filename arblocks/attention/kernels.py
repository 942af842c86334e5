"""The attention kernels of ``transformer_block`` behind one module: the dense masked SDPA (the reference), the tiled
path (:mod:`arblocks.attention.tiled`) and FlexAttention (:mod:`arblocks.attention.flex`). All three compute the same
function of the same mask; ``kernel`` only chooses how.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import flex as flex_attention
from .tiled import TileLayout, tile_layout, tiled_attention


class MaskedAttention(nn.Module):
    """Masked multi-head attention with one ``[P, N, N]`` mask (P = 1, or one per head, the same within each of
    ``groups`` equal runs of heads), shared by every block with the same pattern (moved to a device once). Each group
    of heads takes the tiled path when that computes under half the scores (``kernel="auto"``), else the dense
    masked SDPA. With ``flex``, it also holds each group's FlexAttention block mask (``kernel="flex"``), used wherever
    FlexAttention can run and the ``auto`` path elsewhere."""

    def __init__(self, mask: torch.Tensor, heads: int, groups: int = 1, flex: bool = False):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        size = heads // groups  # equal runs of heads with one mask each: (first head, end)
        self.head_groups = [(g * size, (g + 1) * size) for g in range(groups)]
        meta = mask.device.type == "meta"  # a meta build has no mask values to tile or block
        self.tiles: list[int | None] = []
        for i, (start, _) in enumerate(self.head_groups):
            layout = None if meta else tile_layout(mask[start])
            self.tiles.append(layout.tile if layout else None)
            for name in ("key_tiles", "mask", "order"):
                self.register_buffer(f"tile_{name}_{i}", getattr(layout, name) if layout else None, persistent=False)
        self.flex = nn.ModuleList([flex_attention.FlexMask(mask[start]) for start, _ in self.head_groups]) if flex and not meta else None

    @property
    def tiled(self) -> bool:
        return any(self.tiles)

    def layout(self, group: int) -> TileLayout | None:
        tile = self.tiles[group]
        return TileLayout(tile, *(getattr(self, f"tile_{name}_{group}") for name in ("key_tiles", "mask", "order"))) if tile else None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str = "auto") -> torch.Tensor:
        """``q, k: [B, heads, N, c]``, ``v: [B, heads, N, c_v]`` -> ``[B, heads, N, c_v]``."""
        flex = kernel == "flex" and self.flex is not None and flex_attention.usable(q)
        if kernel == "dense" or not (flex or self.tiled):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        out = []
        for group, (start, end) in enumerate(self.head_groups):
            qs, ks, vs = (t[:, start:end] for t in (q, k, v))
            if flex:
                out.append(self.flex[group](qs, ks, vs))
            elif layout := self.layout(group):
                out.append(tiled_attention(qs, ks, vs, layout))
            else:
                out.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=self.mask[start]))
        return torch.cat(out, 1)
