"""Attention that computes only the tiles of the score matrix its mask keeps (a block-sparse path in plain PyTorch).

The heads that share a pattern (a head group: all heads, or one of Sparse Transformer's two) are tiled together. Their
sequence is cut into tiles of ``T`` positions. For every query tile, :func:`tile_layout` lists the key tiles in which
the mask keeps at least one score (``K`` of them, padded); :func:`tiled_attention` gathers those key and value tiles
and computes ``[T, K * T]`` blocks of scores with the mask cut the same way. The result is the dense masked
attention's (the skipped tiles hold no kept score), at a cost that follows the kept tiles instead of N².

Tiles are cut in one of two orders of the positions: the sequence's own, or one that puts positions that are never
linked by a kept score (directly or through other positions) in separate runs (:func:`linked_groups`). A pattern made
of disjoint groups, such as the column part of Sparse Transformer's strided pattern (every l-th position), is
scattered over every tile in the sequence's order and block-diagonal in the other, so it is tiled whatever its stride.
Local patterns (``local_1d``, ``local_2d``, the local part of ``strided``) keep the sequence's order. A head group
whose pattern touches most key tiles (a summary part, full attention) runs the dense masked attention. Nothing here
knows a pattern by name: a plugin's pattern gets the same choice from its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

TILE_SIZES = (512, 256, 128, 64, 32, 16)
#: tile a head group only when each query computes at most this share of the dense scores
MAX_COMPUTED_SHARE = 0.5
#: rounds of label propagation before :func:`linked_groups` gives up (it needs about log2 of a group's diameter)
MAX_ROUNDS = 64


@dataclass
class TileLayout:
    """The tiling of one head group's ``[N, N]`` mask."""

    tile: int
    key_tiles: torch.Tensor  # [nQ, K] long: the key tiles each query tile reads (padded with unoccupied tiles)
    mask: torch.Tensor  # [nQ, T, K * T] bool: the mask cut to those tiles (all False in the padding)
    order: torch.Tensor | None = None  # [N] long: the positions in tile order (None: the sequence's own)


def linked_groups(mask: torch.Tensor) -> torch.Tensor | None:
    """``[N]`` long for an ``[N, N]`` mask: for every position, the first position of its group, the positions linked to
    it by kept scores in either direction, directly or through others (connected components, by minimum-label
    propagation with pointer jumping). None when that does not settle within :data:`MAX_ROUNDS` rounds."""
    n = len(mask)
    linked = mask | mask.T
    labels = torch.arange(n)
    for _ in range(MAX_ROUNDS):
        neighbours = torch.where(linked, labels[None, :], n).amin(1)  # [N] smallest label among each position's links
        new = torch.minimum(labels, neighbours)
        while not torch.equal(new[new], new):  # a label is a position of the same group: follow it to its own label
            new = new[new]
        if torch.equal(new, labels):
            return labels
        labels = new
    return None


def grouped_order(mask: torch.Tensor) -> torch.Tensor | None:
    """``[N]``: the positions sorted by group (:func:`linked_groups`), each group in sequence order; None when the mask
    links every position into one group."""
    groups = linked_groups(mask)
    if groups is None or bool((groups == 0).all()):
        return None
    return torch.sort(groups, stable=True).indices


def reordered(mask: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """An ``[N, N]`` mask with its queries and keys both in ``order`` (None: as it is)."""
    return mask if order is None else mask[order][:, order]


def occupied_tiles(mask: torch.Tensor, tile: int) -> torch.Tensor:
    """``[nQ, nK]`` bool for an ``[N, N]`` mask: the ``tile`` x ``tile`` tiles that keep a score (the last ones padded
    with False where ``tile`` does not divide N)."""
    pad = -len(mask) % tile
    return rearrange(F.pad(mask, (0, pad, 0, pad)), "(q t) (k s) -> q k t s", t=tile, s=tile).any(-1).any(-1)


def attend_in_order(order: torch.Tensor | None, attend, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attend(q, k, v)`` on ``[B, h, N, c]`` inputs with their positions in ``order`` (None: as they are), its output
    put back in the sequence's order."""
    if order is None:
        return attend(q, k, v)
    out = attend(*(t.index_select(2, order) for t in (q, k, v)))
    return torch.zeros_like(out).index_copy(2, order, out)


def tile_layout(mask: torch.Tensor) -> TileLayout | None:
    """The cheapest tiling of an ``[N, N]`` mask, in the better of its two orders, or None when no tiling computes at
    most :data:`MAX_COMPUTED_SHARE` of the scores."""
    n = len(mask)
    order = grouped_order(mask)
    orders = [(None, mask)] + ([(order, reordered(mask, order))] if order is not None else [])
    best = None  # (keys computed per query, tile, order, mask in that order, occupied tiles)
    for tile in (t for t in TILE_SIZES if n % t == 0 and t < n):
        for order, ordered in orders:
            occupied = occupied_tiles(ordered, tile)  # [nQ, nK]
            width = int(occupied.sum(-1).max()) * tile
            if width <= MAX_COMPUTED_SHARE * n and (best is None or width < best[0]):
                best = (width, tile, order, ordered, occupied)
    if best is None:
        return None
    width, tile, order, ordered, occupied = best
    # the occupied tiles first; the padding is distinct unoccupied tiles, whose mask is all False
    # contiguous: inductor's CPU backward of the gather corrupted the heap with a sliced (strided) index, torch 2.13
    key_tiles = occupied.int().sort(dim=-1, descending=True, stable=True).indices[:, : width // tile].contiguous()  # [nQ, K]
    tiles = rearrange(ordered, "(q t) (k s) -> q t k s", t=tile, s=tile)
    cut = tiles.gather(2, key_tiles[:, None, :, None].expand(-1, tile, -1, tile))  # [nQ, T, K, T]
    return TileLayout(tile, key_tiles, rearrange(cut, "q t k s -> q t (k s)").contiguous(), order)


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Masked attention of one head group, ``q, k, v: [B, h, N, c]``, over the layout's tiles: ``[B, h, N, c_v]``."""
    return attend_in_order(layout.order, lambda *qkv: attend_tiles(*qkv, layout), q, k, v)


def attend_tiles(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """:func:`tiled_attention` with the positions already in tile order."""
    tile = layout.tile
    kt, vt = (rearrange(t, "b h (q t) c -> b h q t c", t=tile) for t in (k, v))
    keys, values = (rearrange(t[:, :, layout.key_tiles], "b h q k t c -> b h q (k t) c") for t in (kt, vt))  # gathered tiles
    queries = rearrange(q, "b h (q t) c -> b h q t c", t=tile)
    out = masked_attention(queries, keys, values, layout.mask)  # [B, h, nQ, T, c_v]
    return rearrange(out, "b h q t c -> b h (q t) c")


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SDPA with a boolean mask (True: attend) where every query keeps at least one key. On the CPU, whose SDPA takes
    its general path for a mask and unequal query and value widths (and checks for fully masked rows), the same
    computation written out is faster."""
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [..., T, K * T]
    return torch.matmul(scores.masked_fill(~mask, float("-inf")).softmax(-1), v)
