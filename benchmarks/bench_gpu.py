"""Issue 16's device benchmark: images/s and peak memory of the full specs in the precisions and compilation a GPU user
would pick, against the hand-written PixelCNN++ in the same run (one prepared script for a device machine).

    python benchmarks/bench_gpu.py [--device cuda] [--steps 10] [--specs pixelcnn_pp:64 pixelsnail:32 image_transformer:16 ...]
                                   [--variants eager bf16 bf16+compiled+channels_last bf16+compiled+flex] [--reference]
                                   [--backend inductor]

A spec is `name:batch` (specs/NAME.json at that batch). A variant is `+`-joined: `eager` (fp32), `bf16` (autocast),
`compiled` (`torch.compile(fullgraph=True)`, as `arblocks train --compile`), `channels_last` (weights and images),
`flex` (transformer blocks on FlexAttention; specs without one skip it). Every variant of a spec starts from the same
weights; each takes its warm-up steps (compilation included, reported as `first_s`), then `--steps` timed train steps
(forward, loss, backward, Adam step) in a row (benchmarks/train_step.py). Peak memory is
`torch.cuda.max_memory_allocated` over the timed steps (on the CPU, the growth of the maximum resident set).
`--reference` adds the hand-written PixelCNN++ (benchmarks/pixelcnn_pp_reference.py, eager fp32, the spec's batch)
beside `pixelcnn_pp`. Prints one JSON line per run, and ratios to the spec's eager fp32 (and to the reference).
On the CPU (`--device cpu`, `--backend eager`) it runs as a smoke test of the script itself.
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

from pixelcnn_pp_reference import PixelCNNpp, discretized_mix_logistic_loss  # noqa: E402
from train_step import time_steps, train_step  # noqa: E402

from arblocks import build_model, parse_spec  # noqa: E402
from arblocks.spec.edit import visit  # noqa: E402
from arblocks.training.precision import in_memory_format  # noqa: E402

DEFAULT_SPECS = ["pixelcnn_pp:64", "pixelsnail:32", "image_transformer:16", "sparse_transformer:16", "igpt_s:16"]
FLAGS = {"eager", "bf16", "compiled", "channels_last", "flex"}


def spec_data(name: str, flex: bool) -> dict | None:
    data = json.loads((ROOT / f"specs/{name}.json").read_text())
    found = []

    def use_flex(node: dict) -> None:
        if node.get("type") == "transformer_block" or "transformer_block" in node:
            target = node if node.get("type") == "transformer_block" else node["transformer_block"]
            target["kernel"] = "flex"
            found.append(node)

    if flex:
        visit(data, use_flex)
        if not found:
            return None
    return data


def timed(step, steps: int, device: torch.device) -> tuple[float, float, float]:
    """(seconds of the first step, compilation included; then :func:`train_step.time_steps`: median seconds per step
    after one more warm-up step, peak GiB)."""
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start, *time_steps(step, steps, device))


def run_variant(base, variant: set[str], x, args, device):
    model = copy.deepcopy(base).train()
    xv = x
    if "channels_last" in variant:
        model.to(memory_format=torch.channels_last)
        xv = in_memory_format(x, True)
    net = torch.compile(model, fullgraph=True, backend=args.backend) if "compiled" in variant else model
    dims = x[0].numel()
    loss_fn = lambda n, images: model.head.nll(n(images), images).sum() / (len(images) * dims)  # noqa: E731
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return timed(train_step(net, loss_fn, optimizer, xv, "bf16" if "bf16" in variant else "fp32", device), args.steps, device)


def reference_row(batch: int, args, device) -> dict:
    torch.manual_seed(0)
    model = PixelCNNpp().to(device).train()
    x = torch.randint(0, 256, (batch, 3, 32, 32), device=device)
    loss_fn = lambda m, images: discretized_mix_logistic_loss(images.float() / 127.5 - 1, m(images.float() / 127.5 - 1), 10) / (len(images) * 3072)  # noqa: E731
    first, step, peak = timed(train_step(model, loss_fn, torch.optim.Adam(model.parameters(), lr=1e-4), x, "fp32", device), args.steps, device)
    return {"spec": "pixelcnn_pp hand-written", "variant": "eager", "batch": batch, "first_s": first, "step_s": step, "images_per_s": batch / step, "peak_gib": peak}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--specs", nargs="+", default=DEFAULT_SPECS)
    parser.add_argument("--variants", nargs="+", default=["eager", "bf16", "bf16+compiled+channels_last", "bf16+compiled+flex"])
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (`eager` for a quick smoke run)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}), flush=True)
    for item in args.specs:
        name, batch = item.split(":")
        batch, rows = int(batch), []
        if args.reference and name == "pixelcnn_pp":
            rows.append(reference_row(batch, args, device))
            print(json.dumps(rows[-1]), flush=True)
        for variant in args.variants:
            flags = set(variant.split("+"))
            if flags - FLAGS:
                parser.error(f"unknown variant flags {sorted(flags - FLAGS)} in {variant!r}")
            data = spec_data(name, "flex" in flags)
            if data is None:
                continue
            torch.manual_seed(0)
            base = build_model(parse_spec(data)).to(device)
            image = base.image
            x = torch.randint(0, image.levels, (batch, image.channels, image.height, image.width), device=device)
            try:
                first, step, peak = run_variant(base, flags, x, args, device)
                row = {"spec": name, "variant": variant, "batch": batch, "first_s": first, "step_s": step, "images_per_s": batch / step, "peak_gib": peak}
            except Exception as error:  # noqa: BLE001 - report the failure and go on with the other runs
                row = {"spec": name, "variant": variant, "batch": batch, "failed": f"{type(error).__name__}: {str(error)[:300]}"}
            finally:
                del base
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            eager = next((r for r in rows if r["spec"] == name and r["variant"] == "eager" and "step_s" in r), None)
            reference = next((r for r in rows if r["spec"].endswith("hand-written")), None)
            if "step_s" in row and eager:
                row["speed_over_eager"] = eager["step_s"] / row["step_s"]
            if "step_s" in row and reference:
                row["speed_over_hand_written"] = reference["step_s"] / row["step_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
