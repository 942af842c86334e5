"""Cost of the causality check's walk in float32 and bf16 (issue 28), side by side with the float64-only check, in
one run (figures go to docs/performance.md).

    OMP_NUM_THREADS=1 python benchmarks/bench_precision_walk.py [--repeats 3]
    python benchmarks/bench_precision_walk.py [--repeats 3]          # torch's default threads

For each spec: the check `arblocks build` runs (check_spec at its automatic size, on the model built once), with
the walk in float64 only (precisions=()), in float64 and float32 (the default), and in float64, float32 and bf16.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from arblocks import build_model, load_spec
from arblocks.causality import check_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["pixelcnn.json", "gated_pixelcnn.json", "pixelcnn_pp.json", "pixelsnail.json", "image_transformer_small.json", "lmconv_small.json"]
VARIANTS = {"float64 only": (), "+ float32": ("float32",), "+ float32 + bf16": ("float32", "bf16")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--specs", nargs="*", default=SPECS)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.repeats}")
    print(f"{'spec':32} " + " ".join(f"{name:>18}" for name in VARIANTS) + "   ratio (+ float32 / float64 only)")
    for name in args.specs:
        spec = load_spec(ROOT / "specs" / name)
        model = build_model(spec, device="meta")
        times = {}
        for variant, precisions in VARIANTS.items():
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                report = check_spec(spec, full=model, precisions=precisions)
                runs.append(time.perf_counter() - start)
                assert report.ok, report.summary()
            times[variant] = statistics.median(runs)
        ratio = times["+ float32"] / times["float64 only"]
        print(f"{name:32} " + " ".join(f"{t:17.2f}s" for t in times.values()) + f"   {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
