"""The discretized logistic mixture head against an independent float64 computation, at the edges and under autocast."""

import itertools

import pytest
import torch

from arblocks import ImageSpec
from arblocks.core.streams import StreamInfo
from arblocks.heads.logistic_mixture import LogisticMixture, LogisticMixtureConfig


def head(channels=3, bits=8, k=4):
    image = ImageSpec(channels=channels, height=3, width=3, bits=bits)
    return LogisticMixture(LogisticMixtureConfig(components=k), StreamInfo(8, 3, 3), image)


def random_params(h, batch=2, size=3, scale=(-3.0, -0.5), seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(batch, h.num_params, size, size, generator=g)
    c, k = h.image.channels, h.k
    ls = slice(k + c * k, k + 2 * c * k)
    p[:, ls] = torch.empty(batch, c * k, size, size).uniform_(*scale, generator=g)
    return p


def reference_log_prob(h, params, x):
    """log p(pixel) by integrating each logistic over its bin, in float64, written out component by component."""
    p = params.double()
    c_n, k_n, levels = h.image.channels, h.k, h.image.levels
    logits = p[:, :k_n]
    means = p[:, k_n : k_n + c_n * k_n].reshape(p.shape[0], c_n, k_n, *p.shape[2:])
    log_s = p[:, k_n + c_n * k_n : k_n + 2 * c_n * k_n].reshape(p.shape[0], c_n, k_n, *p.shape[2:]).clamp(min=-7)
    coeffs = torch.tanh(p[:, k_n + 2 * c_n * k_n :]).reshape(p.shape[0], -1, k_n, *p.shape[2:])
    xs = x.double() * 2 / (levels - 1) - 1
    width = 2 / (levels - 1)
    cdf = lambda v, m, s: torch.sigmoid((v - m) / torch.exp(s))  # noqa: E731
    total = torch.zeros(p.shape[0], *p.shape[2:], dtype=torch.float64)
    weights = torch.softmax(logits, dim=1)
    for k in range(k_n):
        prob = torch.ones_like(total)
        pair = 0
        for c in range(c_n):
            m = means[:, c, k].clone()
            for prev in range(c):
                m = m + coeffs[:, pair, k] * xs[:, prev]
                pair += 1
            upper = torch.where(x[:, c] == levels - 1, torch.ones_like(m), cdf(xs[:, c] + width / 2, m, log_s[:, c, k]))
            lower = torch.where(x[:, c] == 0, torch.zeros_like(m), cdf(xs[:, c] - width / 2, m, log_s[:, c, k]))
            # right of the mean, the difference of survival functions keeps float64's precision in the tail
            survival_lower = torch.where(x[:, c] == 0, torch.ones_like(m), cdf(-(xs[:, c] - width / 2), -m, log_s[:, c, k]))
            survival_upper = torch.where(x[:, c] == levels - 1, torch.zeros_like(m), cdf(-(xs[:, c] + width / 2), -m, log_s[:, c, k]))
            prob = prob * torch.where(xs[:, c] > m, survival_lower - survival_upper, upper - lower)
        total = total + weights[:, k] * prob
    return torch.log(total)


@pytest.mark.parametrize("channels, bits", [(3, 8), (1, 8), (3, 5), (1, 2)])
def test_matches_an_independent_float64_integration(channels, bits):
    h = head(channels, bits)
    params = random_params(h)
    x = torch.randint(0, 2**bits, (2, channels, 3, 3))
    x[0, :, 0, 0] = 0
    x[0, :, 0, 1] = 2**bits - 1  # both edges
    got = h.log_prob_per_pixel(params, x).double()
    assert torch.allclose(got, reference_log_prob(h, params, x), atol=2e-4, rtol=1e-4)
    assert torch.allclose(h.nll(params, x), -got.flatten(1).sum(1).float(), atol=1e-3)


@pytest.mark.parametrize("channels, bits", [(1, 8), (1, 4), (1, 1), (3, 3), (2, 4)])
def test_probabilities_over_all_values_of_a_pixel_sum_to_one(channels, bits):
    h = head(channels, bits, k=3)
    params = random_params(h, batch=1, size=2)
    levels = 2**bits
    values = torch.tensor(list(itertools.product(range(levels), repeat=channels)))  # [V, C]
    x = values[:, :, None, None].expand(-1, -1, 2, 2)
    log_p = h.log_prob_per_pixel(params.expand(len(values), -1, -1, -1), x)  # [V, 2, 2]
    assert torch.allclose(torch.logsumexp(log_p.double(), 0), torch.zeros(2, 2, dtype=torch.float64), atol=1e-4)


def test_edges_and_tiny_bins_are_finite_with_finite_gradients():
    h = head(3, 8)
    params = random_params(h).requires_grad_(True)
    with torch.no_grad():
        params[:, h.k : h.k + 3 * h.k] = 60.0  # means far outside [-1, 1]
        params[1, h.k : h.k + 3 * h.k] = -60.0
        params[:, h.k + 3 * h.k : h.k + 6 * h.k] = -20.0  # log-scales below the -7 clamp: tiny logistics
    x = torch.randint(0, 256, (2, 3, 3, 3))
    x[:, :, 0, 0], x[:, :, 0, 1] = 0, 255
    nll = h.nll(params, x)
    nll.sum().backward()
    assert torch.isfinite(nll).all() and torch.isfinite(params.grad).all()


@pytest.mark.parametrize("bits", [8, 4])
def test_bins_far_in_a_tail_keep_their_precision(bits):
    """Where a difference of two sigmoids loses every digit in float32, the head still matches float64."""
    h = head(1, bits, k=1)
    levels = 2**bits
    params = torch.zeros(1, h.num_params, 1, 1)
    params[0, 1] = -0.9  # mean
    params[0, 2] = -3.0  # log-scale: bins near +0.6 are ~30 scales away
    x = torch.tensor([levels // 2 + 1, levels - 2]).view(2, 1, 1, 1)
    got = h.log_prob_per_pixel(params.expand(2, -1, -1, -1), x).double()
    ref = reference_log_prob(h, params.expand(2, -1, -1, -1), x)
    assert (ref < -20).all()  # probabilities below 1e-9: the regime of PixelCNN++'s fallback
    assert torch.allclose(got, ref, rtol=1e-5)


def test_loss_under_bf16_autocast_is_finite_and_float32():
    from pathlib import Path

    from arblocks import build_model
    from tests.helpers import shrunk_spec

    model = build_model(shrunk_spec(Path(__file__).parent.parent / "specs/pixelcnn_pp.json", divide=10, times={5: 1, 6: 2}, size=8))
    x = torch.randint(0, 256, (2, 3, 8, 8))
    x[:, :, 0] = 0
    x[:, :, -1] = 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(x)
        nll = model.head.nll(params, x)
    assert params.dtype == torch.bfloat16 and nll.dtype == torch.float32
    nll.sum().backward()
    assert torch.isfinite(nll).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_samples_are_levels_and_follow_the_distribution():
    h = head(1, 2, k=2)
    params = random_params(h, batch=1, size=1, scale=(-1.5, -0.5))
    big = params.expand(20000, -1, -1, -1)
    samples = h.sample(big, generator=torch.Generator().manual_seed(1))
    assert samples.dtype == torch.long and samples.shape == (20000, 1, 1, 1)
    freq = torch.bincount(samples.flatten(), minlength=4).double() / 20000
    probs = h.log_prob_per_pixel(params.expand(4, -1, -1, -1), torch.arange(4).view(4, 1, 1, 1)).exp().flatten().double()
    assert torch.allclose(freq, probs, atol=0.015)


def test_low_temperature_samples_the_mode():
    h = head(3, 8, k=2)
    params = random_params(h, batch=4, size=3)
    a = h.sample(params, generator=torch.Generator().manual_seed(0), temperature=1e-4)
    b = h.sample(params, generator=torch.Generator().manual_seed(1), temperature=1e-4)
    assert ((a - b).abs() <= 1).all()  # near-deterministic
    assert a.min() >= 0 and a.max() <= 255
