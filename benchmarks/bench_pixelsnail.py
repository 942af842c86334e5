"""Train-step time and peak memory of specs/pixelsnail.json (run by hand; figures go to docs/performance.md).

    python benchmarks/bench_pixelsnail.py [--batch 8] [--steps 3] [--device cpu|cuda] [--dtype fp32|bf16]

A train step is forward, discretized-logistic loss, backward and an Adam step, on random 32x32x3 images. Peak memory
is `torch.cuda.max_memory_allocated` on CUDA and the growth of the process's maximum resident set on the CPU.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from arblocks import build_model, load_spec

ROOT = Path(__file__).resolve().parent.parent


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = build_model(load_spec(ROOT / "specs/pixelsnail.json")).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), device=device)
    before = rss_gib()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = model.nll(x).mean()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else rss_gib() - before + 0.0
    print(f"PixelSNAIL ({model.num_parameters():,} parameters) batch {args.batch} 32x32x3 {args.dtype} on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  {median:.2f} s per train step (median of {args.steps}), {args.batch / median:.1f} images/s")
    label = "peak allocated" if device.type == "cuda" else "growth of the max RSS in the train steps (activations, gradients, Adam state)"
    print(f"  {label}: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
