"""The S-curve and the generalized Hilbert curve ("gilbert") as arblocks orderings."""

from __future__ import annotations

from typing import Literal

import torch

from arblocks.core import Ordering, OrderingConfig


class SCurveConfig(OrderingConfig):
    """Row by row from the top, alternating direction: left to right, then right to left (a boustrophedon)."""

    type: Literal["s_curve"] = "s_curve"


class SCurve(Ordering):
    Config = SCurveConfig

    def curve(self, height, width):
        rank = torch.arange(height * width).reshape(height, width)
        rank[1::2] = rank[1::2].flip(1)
        return rank


class HilbertConfig(OrderingConfig):
    """A generalized Hilbert curve filling any rectangle (for powers of two, the Hilbert curve): each step moves to an adjacent pixel."""

    type: Literal["hilbert"] = "hilbert"


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def hilbert_path(width: int, height: int) -> list[tuple[int, int]]:
    """(x, y) coordinates visiting every pixel of a width x height rectangle, each next to the previous one."""
    path: list[tuple[int, int]] = []

    def walk(x, y, ax, ay, bx, by):
        w, h = abs(ax + ay), abs(bx + by)
        dax, day, dbx, dby = _sign(ax), _sign(ay), _sign(bx), _sign(by)
        if h == 1:
            for _ in range(w):
                path.append((x, y))
                x, y = x + dax, y + day
            return
        if w == 1:
            for _ in range(h):
                path.append((x, y))
                x, y = x + dbx, y + dby
            return
        ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
        w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
        if 2 * w > 3 * h:
            if w2 % 2 and w > 2:
                ax2, ay2 = ax2 + dax, ay2 + day
            walk(x, y, ax2, ay2, bx, by)
            walk(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
        else:
            if h2 % 2 and h > 2:
                bx2, by2 = bx2 + dbx, by2 + dby
            walk(x, y, bx2, by2, ax2, ay2)
            walk(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
            walk(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby), -bx2, -by2, -(ax - ax2), -(ay - ay2))

    if width >= height:
        walk(0, 0, width, 0, 0, height)
    else:
        walk(0, 0, 0, height, width, 0)
    return path


class Hilbert(Ordering):
    Config = HilbertConfig

    def curve(self, height, width):
        # oriented as the original's gilbert2d order (ajayjain/lmconv's masking.py): the path's first coordinate is
        # the row, so its released checkpoints (the 28x28 MNIST model's "hilbert" order) see the pixels they were trained on
        rank = torch.empty(height, width, dtype=torch.long)
        for i, (row, col) in enumerate(hilbert_path(height, width)):
            rank[row, col] = i
        return rank
