"""Train-step time of the spec-built PixelCNN++ against a hand-written PyTorch module of the same architecture.

    python benchmarks/bench_pixelcnn_pp.py [--filters 32] [--resnet 1] [--batch 16] [--steps 10] [--device cpu] [--dtype fp32|bf16]

Both models get the same weights (copied block by block) and are checked to compute the same outputs; then they
alternate train steps (forward, loss, backward, Adam step) in one process, and the script prints each one's median
step time, the ratio (spec / hand-written; <= 1.0 means the spec-built model is at least as fast) and, on CUDA, the
peak memory of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pixelcnn_pp_reference import PixelCNNpp, discretized_mix_logistic_loss  # noqa: E402
from train_step import train_step  # noqa: E402

from arblocks import build_model, parse_spec  # noqa: E402
from arblocks.spec.edit import visit  # noqa: E402


def spec_model(filters: int, resnet: int):
    data = json.loads((ROOT / "specs/pixelcnn_pp.json").read_text())
    for fields in data["defaults"].values():
        if "channels" in fields:
            fields["channels"] = filters

    def retime(node):
        if node.get("type") == "repeat" and node["times"] in (5, 6):
            node["times"] = resnet + (node["times"] - 5)

    visit(data["body"], retime)
    return build_model(parse_spec(data))


def copy_weights(spec, reference):
    blocks = [spec.layers[s.index] for s in spec.steps if s.type not in ("concat", "add", "identity", "elu")] + [spec.head]
    targets = reference.execution_order()
    assert len(blocks) == len(targets), (len(blocks), len(targets))
    for block, target in zip(blocks, targets):
        src, dst = list(block.parameters()), list(target.parameters())
        assert [p.shape for p in src] == [p.shape for p in dst], (block, target)
        with torch.no_grad():
            for a, b in zip(src, dst):
                b.copy_(a)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--resnet", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    spec = spec_model(args.filters, args.resnet).to(device)
    reference = PixelCNNpp(args.resnet, args.filters).to(device)
    assert spec.num_parameters() == sum(p.numel() for p in reference.parameters())
    copy_weights(spec, reference)
    x_int = torch.randint(0, 256, (args.batch, 3, args.size, args.size), device=device)
    xf = x_int.float() / 127.5 - 1
    spec.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(spec(x_int), reference(xf), atol=1e-4), "the two models must compute the same function"
    spec.train(), reference.train()

    spec_loss = lambda m, x: m.nll(x).sum()  # noqa: E731
    ref_loss = lambda m, x: discretized_mix_logistic_loss(x.float() / 127.5 - 1, m(x.float() / 127.5 - 1), 10)  # noqa: E731
    runs = {
        "spec": train_step(spec, spec_loss, torch.optim.Adam(spec.parameters(), 1e-3), x_int, args.dtype, device),
        "hand-written": train_step(reference, ref_loss, torch.optim.Adam(reference.parameters(), 1e-3), x_int, args.dtype, device),
    }
    times = {name: [] for name in runs}
    peak = {}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.steps):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated())
    print(f"PixelCNN++ nr_filters={args.filters} nr_resnet={args.resnet} batch={args.batch} {args.size}x{args.size} {args.dtype} on {device} "
          f"({spec.num_parameters():,} parameters), torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in runs:
        extra = f", peak {peak[name] / 2**30:.2f} GiB" if name in peak else ""
        print(f"  {name:>12}: {statistics.median(times[name]) * 1000:.1f} ms per train step (median of {args.steps}){extra}")
    ratio = statistics.median(times["spec"]) / statistics.median(times["hand-written"])
    print(f"  ratio spec / hand-written: {ratio:.3f}")


if __name__ == "__main__":
    main()
