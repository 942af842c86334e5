"""The head contract.

A head type is an ``nn.Module`` subclass of :class:`Head` with a ``Config`` (subclass of
:class:`arblocks.spec.HeadConfig`) and

* ``requires``: the most permissive causal state its input may have (``strict`` for heads that predict
  each channel from its own channel group, ``past`` for heads that model a pixel's channels jointly);
* ``forward(features) -> params``;
* ``nll(params, x) -> [B]``: negative log-likelihood of integer images ``x`` in nats per image, in float32;
* ``sample(params, generator, temperature) -> x``: an integer image drawn from the parameters at every position;
* ``per_dimension(params) -> [B, C', K, H, W]``: the parameters that predict each channel of each pixel,
  for the causality harness. ``C'`` is the image's channels, or 1 for heads that predict a pixel jointly
  (``joint = True``; their parameters must then see only earlier pixels).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .spec import HeadConfig, ImageSpec
from .streams import Causal, StreamInfo


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
