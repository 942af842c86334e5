"""Test-time averaging over orderings (locally masked convolutions, Jain et al. 2020): the likelihood of a mixture of
the model under several generation orders, with the same weights.

``p(x) = 1/K sum_k p_k(x)``, where ``p_k`` is the model under the k-th of the 8 transposed and reflected forms of
the spec's ordering (the spec's own first). Each ``p_k`` is a normalized distribution, so their mean is one too, and
``-log p(x) = -logsumexp_k(-nll_k(x)) + log K`` is an exact likelihood, never worse than the mean of the orders'
negative log-likelihoods. Only blocks whose causality holds under every order used (``orderings = None``: their masks
follow the order) can be averaged; the builder refuses the others.
"""

from __future__ import annotations

import math

import torch

from ..core.builder import build_model
from ..core.model import ARModel
from ..spec.errors import SpecError
from .loop import conditioning_for

TRANSFORMS = [(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True)]


def ordering_variants(model: ARModel, orders: int, registry=None) -> list[ARModel]:
    """The model under the first ``orders`` forms of its ordering (its own first), sharing its weights."""
    if not 1 <= orders <= len(TRANSFORMS):
        raise ValueError(f"--orders must be between 1 and {len(TRANSFORMS)} (the transposed and reflected forms of an ordering)")
    base = model.spec.ordering
    variants = []
    for transpose, rows, cols in TRANSFORMS[:orders]:
        ordering = base.model_copy(update={"transpose": base.transpose ^ transpose, "reflect_rows": base.reflect_rows ^ rows,
                                           "reflect_cols": base.reflect_cols ^ cols})
        if not variants:
            variants.append(model)
            continue
        try:
            twin = build_model(model.spec.model_copy(update={"ordering": ordering}), registry=registry)
        except SpecError as error:
            first = error.problems[0]
            raise SpecError([first.__class__(first.path, first.type, f"averaging over orders needs blocks that work under every order: {first.message}")]) from None
        twin.load_state_dict(model.state_dict())
        variants.append(twin.to(next(model.parameters()).device).eval())
    return variants


@torch.no_grad()
def evaluate_orders(models: list[ARModel], data, batch_size: int, device) -> tuple[float, float, list[float]]:
    """(bits/dim, nats per image) of the mixture over the orders, and each order's own bits/dim."""
    total, per_order = 0.0, torch.zeros(len(models), dtype=torch.float64)
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        x = data.images[index].to(device)
        nll = torch.stack([m.eval().nll(x, **conditioning_for(m, data, index, device)).double() for m in models])  # [K, B]
        per_order += nll.sum(1).cpu()
        total += float((math.log(len(models)) - torch.logsumexp(-nll, dim=0)).sum())
    dims, n = models[0].image.dims, len(data)
    to_bpd = lambda nats: nats / (n * dims * math.log(2))  # noqa: E731
    return to_bpd(total), total / n, [to_bpd(float(v)) for v in per_order]
