"""The transformer family: train-step time and peak memory, and what each attention kernel costs (run by hand;
figures go to docs/performance.md).

    python benchmarks/bench_sequence.py [--specs igpt_small image_transformer_small sparse_transformer_small]
                                        [--batch 16] [--steps 5] [--device cpu|cuda] [--dtype fp32|bf16]
                                        [--attention auto dense flex] [--sizes 8 16 32] [--kernels [--flex]]

Each spec (with each `--attention` kernel of its transformer blocks, at each `--sizes` image size) runs in a child
process, so that its peak memory is its own: a train step is forward, loss, backward and an Adam step on random
images; peak memory is `torch.cuda.max_memory_allocated` on CUDA and the growth of the child's maximum resident set on
the CPU. `--sizes` keeps a strided stride that is the spec's row the row at the new size (see `resize`).

`--kernels` prints, for each full config, the share of the [N, N] score matrix its pattern keeps and the tile size
each head group chose, and times one attention layer (the block's shapes, batch 4) on the same inputs: forward and
backward with SDPA and the dense mask and with the tiled path (arblocks/attention/tiled.py); forward only with those
and, with `--flex`, compiled FlexAttention (arblocks/attention/flex.py; it has no backward on the CPU).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from queue import Empty

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import median_seconds, time_steps, train_step  # noqa: E402


def train_steps(name: str, kernel: str, batch: int, steps: int, device: str, dtype: str, queue, size: int | None = None) -> None:
    from arblocks import build_model, parse_spec

    torch.manual_seed(0)
    device = torch.device(device)
    data = json.loads((ROOT / f"specs/{name}.json").read_text())
    data.setdefault("defaults", {}).setdefault("transformer_block", {})["kernel"] = kernel
    if size is not None:
        resize(data, size)
    model = build_model(parse_spec(data)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    image = model.image
    x = torch.randint(0, image.levels, (batch, image.channels, image.height, image.width), device=device)
    median, peak = time_steps(train_step(model, lambda m, images: m.nll(images).mean(), optimizer, x, dtype, device), steps, device)
    queue.put({"spec": name, "kernel": kernel, "size": image.height, "params": model.num_parameters(), "batch": batch, "step_s": median, "peak_gib": peak})


def resize(data: dict, size: int) -> None:
    """The spec at ``size`` x ``size``. A strided pattern whose stride is the spec's row (in sub-pixels or pixels) keeps
    it the row at the new size, as the Sparse Transformer defines it (l = sqrt N: O(N sqrt N) scores); a fixed stride
    would keep O(N^2 / l)."""
    from arblocks.spec.edit import visit

    image = data["image"]
    rows = {image["width"] * image["channels"]: size * image["channels"], image["width"]: size}

    def follow_the_row(node: dict) -> None:
        if node.get("type") in ("strided", "fixed") and node.get("stride") in rows:
            node["stride"] = rows[node["stride"]]

    visit(data, follow_the_row)
    image.update(height=size, width=size)


def compare_layer(block, shared, batch: int, repeats: int, device: str, flex: bool) -> dict:
    """One attention layer at the block's shapes: forward and backward with the dense mask and the tiled path; forward
    only (no gradients: what runs on the CPU) with those two and, with ``flex``, compiled FlexAttention."""
    from arblocks.attention import flex as flex_attention
    from arblocks.attention.kernels import MaskedAttention

    n, heads, qk, width = shared.mask.shape[-1], block.config.heads, block.qk, block.qkv.in_features
    torch.manual_seed(0)
    q, k = (torch.randn(batch, heads, n, qk // heads, device=device, requires_grad=True) for _ in range(2))
    v = torch.randn(batch, heads, n, width // heads, device=device, requires_grad=True)
    row = {"max_abs_difference": (shared(q, k, v, kernel="dense") - shared(q, k, v)).abs().max().item()}
    timed = {"dense": lambda: shared(q, k, v, kernel="dense"), "tiled": lambda: shared(q, k, v)}
    for name, fn in timed.items():
        row[f"{name}_s"] = median_seconds(lambda fn=fn: fn().sum().backward(), repeats, device)
    row["dense_over_tiled"] = row["dense_s"] / row["tiled_s"]
    if flex and flex_attention.available():
        with_flex = MaskedAttention(shared.mask.cpu(), heads, len(shared.head_groups), flex=True).to(device)
        timed["flex"] = lambda: with_flex(q, k, v, kernel="flex")
        start = time.perf_counter()
        with torch.no_grad():
            timed["flex"]()
        row["flex_compile_s"] = time.perf_counter() - start
    with torch.no_grad():
        reference = timed["dense"]()
        for name, fn in timed.items():
            fn()  # warm-up
            row[f"{name}_forward_s"] = median_seconds(fn, repeats, device)
            row[f"{name}_forward_difference"] = (fn() - reference).abs().max().item()
    return row


def kernels(device: str, batch: int = 4, repeats: int = 3, flex: bool = False) -> dict:
    """Per full config: the share of the score matrix its pattern keeps, and one attention layer (the block's own
    shapes) computed by each kernel on the same inputs (:func:`compare_layer`)."""
    from arblocks import build_model, load_spec

    results = {}
    for name in ("image_transformer", "sparse_transformer", "igpt_s"):
        model = build_model(load_spec(ROOT / f"specs/{name}.json"))
        block = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock")
        shared = block.attend.to(device)
        n = shared.mask.shape[-1]
        row = {"kept_of_dense": shared.mask.float().mean().item(), "tiles": shared.tiles}
        row["kept_of_causal"] = row["kept_of_dense"] / ((n + 1) / (2 * n))
        if shared.tiled:
            row.update(compare_layer(block, shared, batch, repeats, device, flex))
        results[name] = row
        print(json.dumps({"kernels": {name: row}}), flush=True)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", nargs="*", default=["igpt_small", "image_transformer_small", "sparse_transformer_small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--kernels", action="store_true")
    parser.add_argument("--flex", action="store_true", help="with --kernels: also time compiled FlexAttention (forward only on the CPU; compiling takes minutes there)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[None], help="image sizes to run each spec at (default: the spec's own)")
    parser.add_argument("--attention", nargs="+", choices=["auto", "dense", "flex"], default=["auto"], help="transformer_block kernels to run each spec with")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    for name, kernel, size in ((n, k, z) for n in args.specs for k in args.attention for z in args.sizes):
        queue = context.Queue()
        child = context.Process(target=train_steps, args=(name, kernel, args.batch, args.steps, args.device, args.dtype, queue, size))
        child.start()
        while True:  # a child killed for memory never answers: report it instead of waiting forever
            try:
                result = queue.get(timeout=5)
                break
            except Empty:
                if not child.is_alive():
                    result = {"spec": name, "kernel": kernel, "batch": args.batch, "failed": f"the process died with exit code {child.exitcode} (out of memory?)"}
                    break
        child.join()
        print(json.dumps({**result, "device": args.device, "dtype": args.dtype}), flush=True)
    if args.kernels:
        kernels(args.device, flex=args.flex)


if __name__ == "__main__":
    main()
