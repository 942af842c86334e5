"""Shared by the benchmarks: a train step (forward, loss, backward, optimizer step) and how its time and memory are measured."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def train_step(model, loss_fn: Callable, optimizer, x: torch.Tensor, dtype: str, device: torch.device) -> Callable[[], None]:
    """A function that runs one train step of ``model`` on ``x`` (under bf16 autocast for ``dtype == "bf16"``)."""

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = loss_fn(model, x)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device | str) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> tuple[float, float]:
    """(median seconds per step after one warm-up step, peak GiB): ``torch.cuda.max_memory_allocated`` on CUDA, the
    growth of the process's maximum resident set over the warm-up and the steps on the CPU."""
    before = rss_gib()
    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    median = median_seconds(step, steps, device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else rss_gib() - before
    return median, peak
