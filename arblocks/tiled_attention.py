"""Attention that computes only the tiles of the score matrix its mask keeps (a block-sparse path in plain PyTorch).

The sequence is cut into tiles of ``T`` positions. For every query tile, :func:`tile_layout` lists the key tiles in
which the mask keeps at least one score (at most ``K`` of them, padded); :func:`tiled_attention` gathers those key and
value tiles and runs ``scaled_dot_product_attention`` on ``[T, K * T]`` blocks, with the mask cut the same way. The
result is the dense masked attention's (the skipped tiles hold no kept score), at a cost that follows the kept tiles
instead of N².

Tiles are cut in a per-head order of the positions, chosen from two: the sequence's own, and one that puts positions
that are never linked by a kept score (directly or through other positions) in separate runs
(:func:`linked_groups`). A pattern made of disjoint groups, such as the column part of Sparse Transformer's strided
pattern (every l-th position), is scattered over every tile in the sequence's order and block-diagonal in the
other, so it is tiled whatever its stride. Local patterns (``local_1d``, ``local_2d``, the local part of ``strided``)
keep the sequence's order. Patterns with a summary part, or full attention, touch every key tile and stay dense.
Nothing here knows a pattern by name: a plugin's pattern gets the same choice from its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

TILE_SIZES = (512, 256, 128, 64, 32, 16)
#: use the tiled path only when each query computes at most this share of the dense scores
MAX_COMPUTED_SHARE = 0.5
#: rounds of label propagation before :func:`linked_groups` gives up (it needs about log2 of a group's diameter)
MAX_ROUNDS = 64


@dataclass
class TileLayout:
    tile: int
    key_tiles: torch.Tensor  # [heads, nQ, K] long: the key tiles each query tile reads (padded with unoccupied tiles)
    mask: torch.Tensor  # [heads * nQ, T, K * T] bool: the mask cut to those tiles (all False in the padding)
    order: torch.Tensor | None = None  # [heads, N] long: each head's positions in tile order (None: the sequence's own)


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


def occupied_tiles(mask: torch.Tensor, tile: int) -> torch.Tensor:
    """``[nQ, nK]`` bool for an ``[N, N]`` mask: the tiles that hold a kept score."""
    return rearrange(mask, "(q t) (k s) -> q k t s", t=tile, s=tile).any(-1).any(-1)


def tile_layout(mask: torch.Tensor, heads: int) -> TileLayout | None:
    """The cheapest tiling of a ``[P, N, N]`` mask (P = 1 or heads, each head in the better of its two orders), or None
    when no tiling computes under half the scores."""
    n = mask.shape[-1]
    candidates = []  # per pattern: [(order or None, mask in that order)]
    for p in range(len(mask)):
        if p and torch.equal(mask[p], mask[p - 1]):  # heads of one group share their pattern's mask
            candidates.append(candidates[-1])
            continue
        order = grouped_order(mask[p])
        candidates.append([(None, mask[p])] + ([(order, mask[p][order][:, order])] if order is not None else []))
    best = None
    for tile in TILE_SIZES:
        if n % tile or tile >= n:
            continue
        chosen = []  # per pattern: (keys computed per query, order, occupied tiles)
        for options in candidates:
            tiled = [(order, occupied_tiles(cut, tile)) for order, cut in options]
            chosen.append(min(((int(occ.sum(-1).max()) * tile, order, occ) for order, occ in tiled), key=lambda c: c[0]))
        width = max(c[0] for c in chosen)
        if width <= MAX_COMPUTED_SHARE * n and (best is None or width < best[1]):
            best = (tile, width, chosen)
    if best is None:
        return None
    tile, width, chosen = best
    per_query = width // tile
    orders = torch.stack([order if order is not None else torch.arange(n) for _, order, _ in chosen])  # [P, N]
    ordered = torch.stack([m[o][:, o] for m, o in zip(mask, orders)])  # [P, N, N] each head's mask in its tile order
    occupied = torch.stack([occ for _, _, occ in chosen])  # [P, nQ, nK]
    # the occupied tiles first; the padding is distinct unoccupied tiles, whose mask is all False
    key_tiles = occupied.int().sort(dim=-1, descending=True, stable=True).indices[..., :per_query]  # [P, nQ, K]
    tiles = rearrange(ordered, "p (q t) (k s) -> p q t k s", t=tile, s=tile)
    index = key_tiles[:, :, None, :, None].expand(-1, -1, tile, -1, tile)
    cut = tiles.gather(3, index)  # [P, nQ, T, K, T]
    key_tiles = key_tiles.expand(heads, -1, -1).contiguous()
    cut = rearrange(cut.expand(heads, -1, -1, -1, -1), "h q t k s -> (h q) t (k s)").contiguous()
    reordered = any(order is not None for _, order, _ in chosen)
    return TileLayout(tile, key_tiles, cut, orders.expand(heads, -1).contiguous() if reordered else None)


def tiled_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_tiles: torch.Tensor, mask: torch.Tensor, tile: int, order: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked attention of ``q, k, v: [B, H, N, c]`` over the layout's tiles: ``[B, H, N, c_v]``."""
    heads, n_q, per_query = key_tiles.shape
    head = torch.arange(heads, device=q.device)[:, None]
    if order is not None:  # each head's positions in its tile order
        q, k, v = (t[:, head, order] for t in (q, k, v))  # [B, H, N, c]
    kt, vt = (rearrange(t, "b h (q t) c -> b h q t c", t=tile) for t in (k, v))
    keys, values = (rearrange(t[:, head[..., None], key_tiles], "b h q k t c -> b (h q) (k t) c") for t in (kt, vt))  # gathered tiles
    queries = rearrange(q, "b h (q t) c -> b (h q) t c", t=tile)
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)  # [B, H * nQ, T, c_v]
    out = rearrange(out, "b (h q) t c -> b h (q t) c", h=heads)
    if order is None:
        return out
    return torch.zeros_like(out).scatter(2, order[None, :, :, None].expand_as(out), out)  # back to the sequence's order
