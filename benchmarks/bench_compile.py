"""Compiled against eager train steps, and the step's precision and memory format, side by side in one process.

    python benchmarks/bench_compile.py [--specs pixelcnn_pp_small pixelsnail_small ...] [--batch 16] [--steps 6]
                                       [--variants eager compiled bf16 channels_last] [--device cpu]

For each spec, one model (the same weights for every variant) takes train steps (forward, loss, backward, Adam step)
as each variant alternately: `eager` (fp32), `compiled` (`torch.compile(fullgraph=True)`, inductor: what
`arblocks train --compile` does), `bf16` (autocast) and `channels_last` (eager fp32, weights and images channels-last).
Prints per spec and variant the median step time, its ratio to eager (< 1: faster), and the compilation time (the
first compiled step). `pixelcnn_pp_small` is specs/pixelcnn_pp.json at nr_filters 32, nr_resnet 1 on 32x32 RGB.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import median_seconds  # noqa: E402

from arblocks import build_model, load_spec, parse_spec  # noqa: E402
from arblocks.spec.edit import visit  # noqa: E402
from arblocks.training.precision import autocast, in_memory_format  # noqa: E402


def pixelcnn_pp_small():
    data = json.loads((ROOT / "specs/pixelcnn_pp.json").read_text())
    for fields in data["defaults"].values():
        if "channels" in fields:
            fields["channels"] = 32

    def retime(node):
        if node.get("type") == "repeat" and node["times"] in (5, 6):
            node["times"] -= 4

    visit(data["body"], retime)
    return parse_spec(data)


def spec_of(name: str):
    return pixelcnn_pp_small() if name == "pixelcnn_pp_small" else load_spec(ROOT / f"specs/{name}.json")


def step_fn(model, x, cond, variant: str, device):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    precision = "bf16" if variant == "bf16" else "fp32"
    net = torch.compile(model, fullgraph=True) if variant == "compiled" else model
    dims = x[0].numel()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            nats = model.head.nll(net(x, **cond), x)
        (nats.sum() / (len(x) * dims)).backward()
        optimizer.step()

    return step


def run(name: str, batch: int, steps: int, variants: list[str], device) -> dict:
    torch.manual_seed(0)
    base = build_model(spec_of(name)).to(device)
    image = base.image
    x = torch.randint(0, image.levels, (batch, image.channels, image.height, image.width), device=device)
    cond = {k: base.inputs[k].example(batch).to(device) for k in base.provided_inputs}
    steps_by_variant, first = {}, {}
    for variant in variants:
        model = copy.deepcopy(base).train()
        xv = x
        if variant == "channels_last":
            model.to(memory_format=torch.channels_last)
            xv = in_memory_format(x, True)
        steps_by_variant[variant] = step_fn(model, xv, cond, variant, device)
        start = time.perf_counter()
        steps_by_variant[variant]()  # warm-up; for `compiled`, the compilation
        first[variant] = time.perf_counter() - start
    times = {v: [] for v in variants}
    for _ in range(steps):  # alternate, so that the machine's load falls on every variant alike
        for variant in variants:
            times[variant].append(median_seconds(steps_by_variant[variant], 1, device))
    median = {v: sorted(t)[len(t) // 2] for v, t in times.items()}
    row = {"spec": name, "batch": batch, "threads": torch.get_num_threads(), "parameters": base.num_parameters()}
    for variant in variants:
        row[f"{variant}_s"] = round(median[variant], 4)
        if variant != "eager" and "eager" in median:
            row[f"{variant}_over_eager"] = round(median[variant] / median["eager"], 3)
    if "compiled" in first:
        row["compile_s"] = round(first["compiled"], 1)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", nargs="*", default=["pixelcnn_pp_small", "pixelsnail_small", "image_transformer_small", "sparse_transformer_small", "igpt_small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=["eager", "compiled", "bf16", "channels_last"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for name in args.specs:
        print(json.dumps(run(name, args.batch, args.steps, args.variants, torch.device(args.device))), flush=True)


if __name__ == "__main__":
    main()
