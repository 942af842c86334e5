"""Attention that computes only the tiles of the score matrix its mask keeps (a block-sparse path in plain PyTorch).

The sequence is cut into tiles of ``T`` positions. For every query tile, :func:`tile_layout` lists the key tiles in
which the mask keeps at least one score (at most ``K`` of them, padded); :func:`tiled_attention` gathers those key and
value tiles and runs ``scaled_dot_product_attention`` on ``[T, K * T]`` blocks, with the mask cut the same way. The
result is the dense masked attention's (the skipped tiles hold no kept score), at a cost that follows the kept tiles
instead of N². Local patterns (``local_1d``, ``local_2d``, the local part of ``strided``) gain; patterns with a
column or summary part touch every key tile and stay dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

TILE_SIZES = (512, 256, 128, 64, 32, 16)
#: use the tiled path only when each query computes at most this share of the dense scores
MAX_COMPUTED_SHARE = 0.5


@dataclass
class TileLayout:
    tile: int
    key_tiles: torch.Tensor  # [heads, nQ, K] long: the key tiles each query tile reads (padded with unoccupied tiles)
    mask: torch.Tensor  # [heads * nQ, T, K * T] bool: the mask cut to those tiles (all False in the padding)


def tile_layout(mask: torch.Tensor, heads: int) -> TileLayout | None:
    """The cheapest tiling of a ``[P, N, N]`` mask (P = 1 or heads), or None when no tiling computes under half the scores."""
    n = mask.shape[-1]
    best = None
    for tile in TILE_SIZES:
        if n % tile or tile >= n:
            continue
        occupied = rearrange(mask, "p (q t) (k s) -> p q k t s", t=tile, s=tile).any(-1).any(-1)  # [P, nQ, nK]
        width = int(occupied.sum(-1).max()) * tile  # keys computed per query
        if width <= MAX_COMPUTED_SHARE * n and (best is None or width < best[1]):
            best = (tile, width, occupied)
    if best is None:
        return None
    tile, width, occupied = best
    per_query = width // tile
    # the occupied tiles first; the padding is distinct unoccupied tiles, whose mask is all False
    key_tiles = occupied.int().sort(dim=-1, descending=True, stable=True).indices[..., :per_query]  # [P, nQ, K]
    tiles = rearrange(mask, "p (q t) (k s) -> p q t k s", t=tile, s=tile)
    index = key_tiles[:, :, None, :, None].expand(-1, -1, tile, -1, tile)
    cut = tiles.gather(3, index)  # [P, nQ, T, K, T]
    key_tiles = key_tiles.expand(heads, -1, -1).contiguous()
    cut = rearrange(cut.expand(heads, -1, -1, -1, -1), "h q t k s -> (h q) t (k s)").contiguous()
    return TileLayout(tile, key_tiles, cut)


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_tiles: torch.Tensor, mask: torch.Tensor, tile: int) -> torch.Tensor:
    """Masked attention of ``q, k, v: [B, H, N, c]`` over the layout's tiles: ``[B, H, N, c_v]``."""
    heads, n_q, per_query = key_tiles.shape
    kt, vt = (rearrange(t, "b h (q t) c -> b h q t c", t=tile) for t in (k, v))
    head = torch.arange(heads, device=q.device)[:, None, None]
    keys, values = (rearrange(t[:, head, key_tiles], "b h q k t c -> b (h q) (k t) c") for t in (kt, vt))  # gathered tiles
    queries = rearrange(q, "b h (q t) c -> b (h q) t c", t=tile)
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)  # [B, H * nQ, T, c_v]
    return rearrange(out, "b (h q) t c -> b h (q t) c", h=heads)
