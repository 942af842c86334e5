"""The transformer family: train-step time and peak memory, and what a block-sparse kernel would gain (run by hand;
figures go to docs/performance.md).

    python benchmarks/bench_sequence.py [--specs igpt_small image_transformer_small sparse_transformer_small]
                                        [--batch 16] [--steps 5] [--device cpu|cuda] [--dtype fp32|bf16] [--kernels]

Each spec runs in a child process, so that its peak memory is its own: a train step is forward, loss, backward and an
Adam step on random images; peak memory is `torch.cuda.max_memory_allocated` on CUDA and the growth of the child's
maximum resident set on the CPU. `--kernels` also times one attention layer of the full Image Transformer (local 1D,
blocks of 256 over 3072 sub-pixels) two ways on the same inputs: SDPA with the dense mask, as the blocks run it, and a
blocked computation that only touches each query block's memory (what a block-sparse kernel does), and prints the
fraction of the [N, N] score matrix each full config's pattern keeps.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from pathlib import Path
from queue import Empty

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def train_steps(name: str, batch: int, steps: int, device: str, dtype: str, queue) -> None:
    from arblocks import build_model, load_spec

    torch.manual_seed(0)
    device = torch.device(device)
    model = build_model(load_spec(ROOT / f"specs/{name}.json")).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    image = model.image
    x = torch.randint(0, image.levels, (batch, image.channels, image.height, image.width), device=device)
    before = rss_gib()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model.nll(x).mean()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else rss_gib() - before
    queue.put({"spec": name, "params": model.num_parameters(), "batch": batch, "step_s": statistics.median(times), "peak_gib": peak})


def blocked_local_attention(q, k, v, block: int):
    """Local 1D attention that only computes each query block against itself and the block before: [B, H, N, c]."""
    b, h, n, c = q.shape
    blocks = n // block
    qb = q.reshape(b, h, blocks, block, c)
    kb, vb = (t.reshape(b, h, blocks, block, c) for t in (k, v))
    pad = lambda t: torch.cat([torch.zeros_like(t[:, :, :1]), t[:, :, :-1]], dim=2)  # noqa: E731 - the block before
    keys, values = torch.cat([pad(kb), kb], dim=3), torch.cat([pad(vb), vb], dim=3)  # [B, H, blocks, 2 * block, c]
    i = torch.arange(block)[:, None] + block
    j = torch.arange(2 * block)[None, :]
    mask = (j <= i) & (j > i - 2 * block)  # [block, 2 * block]: causal within the window
    first = torch.ones(blocks, 1, 1, dtype=torch.bool)
    first[0] = False  # the first block has no block before it
    mask = mask[None] & ((j >= block) | first)  # [blocks, block, 2 * block]
    out = F.scaled_dot_product_attention(qb, keys, values, attn_mask=mask)
    return out.reshape(b, h, n, c)


def kernels(device: str, repeats: int = 5) -> dict:
    from arblocks import build_model, load_spec

    results = {}
    for name in ("image_transformer", "sparse_transformer", "igpt_s"):
        model = build_model(load_spec(ROOT / f"specs/{name}.json"))
        block = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock")
        mask = block.attend.mask
        n = mask.shape[-1]
        results[f"{name}_kept_of_dense"] = mask.float().mean().item()
        results[f"{name}_kept_of_causal"] = mask.float().mean().item() / ((n + 1) / (2 * n))
    model = build_model(load_spec(ROOT / "specs/image_transformer.json"))
    mask = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock").attend.mask.to(device)
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 4, 3072, 128, device=device) for _ in range(3))  # batch 4, 4 heads of 128, 3072 sub-pixels
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    blocked = blocked_local_attention(q, k, v, 256)
    results["max_abs_difference"] = (dense - blocked).abs().max().item()
    for label, fn in (("dense_mask_s", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)), ("blocked_s", lambda: blocked_local_attention(q, k, v, 256))):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        results[label] = statistics.median(times)
    results["dense_over_blocked"] = results["dense_mask_s"] / results["blocked_s"]
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", nargs="+", default=["igpt_small", "image_transformer_small", "sparse_transformer_small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--kernels", action="store_true")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    for name in args.specs:
        queue = context.Queue()
        child = context.Process(target=train_steps, args=(name, args.batch, args.steps, args.device, args.dtype, queue))
        child.start()
        while True:  # a child killed for memory never answers: report it instead of waiting forever
            try:
                result = queue.get(timeout=5)
                break
            except Empty:
                if not child.is_alive():
                    result = {"spec": name, "batch": args.batch, "failed": f"the process died with exit code {child.exitcode} (out of memory?)"}
                    break
        child.join()
        print(json.dumps({**result, "device": args.device, "dtype": args.dtype}), flush=True)
    if args.kernels:
        print(json.dumps({"kernels": kernels(args.device)}))


if __name__ == "__main__":
    main()
