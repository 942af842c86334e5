"""Train-step time and peak memory of specs/pixelsnail.json (run by hand; figures go to docs/performance.md).

    python benchmarks/bench_pixelsnail.py [--batch 8] [--steps 3] [--device cpu|cuda] [--dtype fp32|bf16]

A train step is forward, discretized-logistic loss, backward and an Adam step, on random 32x32x3 images. Peak memory
is `torch.cuda.max_memory_allocated` on CUDA and the growth of the process's maximum resident set on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import time_steps, train_step  # noqa: E402

from arblocks import build_model, load_spec  # noqa: E402


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
    step = train_step(model, lambda m, images: m.nll(images).mean(), optimizer, x, args.dtype, device)
    median, peak = time_steps(step, args.steps, device)
    print(f"PixelSNAIL ({model.num_parameters():,} parameters) batch {args.batch} 32x32x3 {args.dtype} on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  {median:.2f} s per train step (median of {args.steps}), {args.batch / median:.1f} images/s")
    label = "peak allocated" if device.type == "cuda" else "growth of the max RSS in the train steps (activations, gradients, Adam state)"
    print(f"  {label}: {peak:.2f} GiB")


if __name__ == "__main__":
    main()
