"""The head contract.

A head type is an ``nn.Module`` subclass of :class:`Head` with a ``Config`` (subclass of
:class:`arblocks.spec.HeadConfig`) and

* ``requires``: the most permissive causal state its input may have (``strict`` for heads that predict
  each channel from its own channel group, ``past`` for heads that model a pixel's channels jointly);
* ``forward(features) -> params``;
* ``nll(params, x) -> [B]``: negative log-likelihood of integer images ``x`` in nats per image, in float32;
* ``sample(params, generator, temperature) -> x``: an integer image drawn from the parameters at every position;
* ``reach()`` (optional): ``Reach()`` for a head that works on each position alone (every built-in head);
* ``per_dimension(params) -> [B, C', K, H, W]``: the parameters that predict each channel of each pixel,
  for the causality harness. ``C'`` is the image's channels, or 1 for heads that predict a pixel jointly
  (``joint = True``; their parameters must then see only earlier pixels).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..spec.models import HeadConfig, ImageSpec
from .incremental import Reach
from .registry import base_of
from .streams import Causal, StreamInfo


@base_of("head")
class Head(nn.Module):
    Config: ClassVar[type[HeadConfig]]
    requires: ClassVar[Causal] = Causal.STRICT
    #: True for heads that model a pixel's channels jointly (one output per pixel for the harness)
    joint: ClassVar[bool] = False

    def __init__(self, config: HeadConfig, source: StreamInfo, image: ImageSpec):
        super().__init__()
        self.config = config
        self.image = image

    def nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Integer levels drawn at every position; temperature < 1 sharpens the distribution."""
        raise NotImplementedError

    def per_dimension(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reach(self) -> Reach | None:
        """For a local head (translation-equivariant, each position's parameters from its features nearby): how far
        it reads its input stream (``Reach()`` for a per-position projection). ``None``: not known (the causality check's
        size rule then asks for the full image, see arblocks.causality.size_rule)."""
        return None


class PointwiseHead(Head):
    """A head that computes each position's parameters from that position's features alone (every built-in head)."""

    def reach(self) -> Reach:
        return Reach()
