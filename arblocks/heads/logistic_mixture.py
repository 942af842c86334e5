"""Discretized logistic mixture (PixelCNN++, Salimans et al. 2017) with the linear coupling of a pixel's channels.

Parameters per pixel, for K components and C channels: K mixture logits, C x K means, C x K log-scales and
C(C-1)/2 x K coupling coefficients (K * 10 for RGB). The mean of channel c is shifted by
``sum_{c' < c} tanh(coeff[c, c']) * x[c']`` (R -> G -> B for RGB), so the features must see only earlier pixels
(state ``past``): the head models a pixel's channels jointly.

The likelihood integrates each logistic over the bin of the observed level: bins have width 2 / (2**bits - 1) on the
[-1, 1] scale, and the first and last bins extend to -inf and +inf. A bin's log-probability
log(sigmoid(a) - sigmoid(b)) is computed as log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)), which has no
cancellation: it stays exact in float32 for bins far in a tail, where PixelCNN++'s difference of two sigmoids loses
every digit and has to fall back on the density at the bin centre times the bin width (below 1e-5). The loss is
computed in float32, outside autocast, with every branch finite so that the discarded ones give no NaN gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field

from ..core.head import PointwiseHead
from ..core.hookspecs import hookimpl
from ..core.layers import Conv
from ..core.streams import Causal
from ..spec.models import HeadConfig

MIN_LOG_SCALE = -7.0


class LogisticMixtureConfig(HeadConfig):
    """Discretized mixture of logistics per pixel with linear coupling of its channels (R -> G -> B), from a 1x1 projection of the features."""

    type: Literal["logistic_mixture"] = "logistic_mixture"
    components: int = Field(10, gt=0, le=256, description="Number of mixture components.")
    weight_norm: bool = Field(False, description="Weight normalization of the 1x1 projection (PixelCNN++ uses it).")


def coupling_pairs(channels: int) -> list[tuple[int, int]]:
    """(c, c') for c' < c, in the order of the coefficient groups: (1,0), (2,0), (2,1), ..."""
    return [(c, p) for c in range(channels) for p in range(c)]


class LogisticMixture(PointwiseHead):
    Config = LogisticMixtureConfig
    requires = Causal.PAST
    joint = True

    def __init__(self, config, source, image):
        super().__init__(config, source, image)
        self.k = config.components
        self.pairs = coupling_pairs(image.channels)
        self.num_params = self.k * (1 + 2 * image.channels + len(self.pairs))
        self.project = Conv(source.channels, self.num_params, 1, weight_norm=config.weight_norm)

    def forward(self, h):
        return self.project(h)  # [B, K * (1 + 2C + C(C-1)/2), H, W]

    def unpack(self, params):
        c, k = self.image.channels, self.k
        logits = params[:, :k]
        means, log_scales, coeffs = torch.split(params[:, k:], [c * k, c * k, len(self.pairs) * k], dim=1)
        split = lambda t: rearrange(t, "b (c k) h w -> b c k h w", k=k)  # noqa: E731
        return logits, split(means), split(log_scales).clamp(min=MIN_LOG_SCALE), torch.tanh(split(coeffs)) if self.pairs else None

    def coupled_means(self, means, coeffs, x):
        """Means of every channel given the observed earlier channels x ([B, C, H, W] in [-1, 1])."""
        shifted = [means[:, c] for c in range(self.image.channels)]
        for i, (c, p) in enumerate(self.pairs):
            shifted[c] = shifted[c] + coeffs[:, i] * x[:, p, None]
        return torch.stack(shifted, dim=1)  # [B, C, K, H, W]

    def log_prob_per_pixel(self, params, x):
        """log p(pixel) for every pixel, [B, H, W], in float32."""
        levels = self.image.levels
        with torch.autocast(device_type=params.device.type, enabled=False):
            params = params.float()
            logits, means, log_scales, coeffs = self.unpack(params)
            xf = x.float() * (2.0 / (levels - 1)) - 1.0  # [B, C, H, W]
            half_bin = 1.0 / (levels - 1)
            centred = xf[:, :, None] - self.coupled_means(means, coeffs, xf)  # [B, C, K, H, W]
            inv_scale = torch.exp(-log_scales)
            plus_in = inv_scale * (centred + half_bin)
            min_in = inv_scale * (centred - half_bin)
            log_cdf_plus = plus_in - F.softplus(plus_in)  # log P(X <= upper edge): the first bin
            log_one_minus_cdf_min = -F.softplus(min_in)  # log P(X > lower edge): the last bin
            # log(sigmoid(plus_in) - sigmoid(min_in)) without cancellation; plus_in - min_in = bin width / scale > 0
            log_bin = log_cdf_plus + log_one_minus_cdf_min + torch.log(-torch.expm1(min_in - plus_in))
            level = x[:, :, None]
            log_probs = torch.where(level == 0, log_cdf_plus, torch.where(level == levels - 1, log_one_minus_cdf_min, log_bin))
            joint = log_probs.sum(dim=1) + F.log_softmax(logits, dim=1)  # [B, K, H, W]
            return torch.logsumexp(joint, dim=1)

    def nll(self, params, x):
        return -self.log_prob_per_pixel(params, x.long()).flatten(1).sum(1)

    def sample(self, params, generator=None, temperature: float = 1.0):
        """Integer levels drawn from the mixture; temperature scales the logistic scales and divides the mixture logits."""
        levels = self.image.levels
        with torch.autocast(device_type=params.device.type, enabled=False):
            logits, means, log_scales, coeffs = self.unpack(params.float())
            b, k, h, w = logits.shape
            probs = rearrange(torch.softmax(logits / max(temperature, 1e-6), dim=1), "b k h w -> (b h w) k")
            choice = rearrange(torch.multinomial(probs, 1, generator=generator), "(b h w) 1 -> b 1 1 h w", b=b, h=h, w=w)
            pick = lambda t: t.gather(2, choice.expand(-1, t.shape[1], -1, -1, -1))[:, :, 0]  # noqa: E731  [B, C, H, W]
            mu, log_s = pick(means), pick(log_scales)
            u = torch.rand(mu.shape, generator=generator, device=mu.device).clamp(1e-5, 1 - 1e-5)
            noise = torch.exp(log_s) * temperature * (torch.log(u) - torch.log1p(-u))
            values = []
            for c in range(self.image.channels):
                value = mu[:, c] + noise[:, c]
                for i, (target, p) in enumerate(self.pairs):
                    if target == c:
                        value = value + pick(coeffs)[:, i] * values[p]
                values.append(value.clamp(-1.0, 1.0))
            x = torch.stack(values, dim=1)
            return torch.round((x + 1) * (levels - 1) / 2).long().clamp(0, levels - 1)

    def per_dimension(self, params):
        return rearrange(params, "b p h w -> b 1 p h w")  # the whole pixel is predicted jointly


@hookimpl
def arblocks_register_heads(register):
    register(LogisticMixture)
