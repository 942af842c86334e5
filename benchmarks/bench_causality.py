"""Speed of `arblocks build` and of the causality harness (run by hand; figures go to docs/performance.md).

    python benchmarks/bench_causality.py [--repeats 3]

Measures, in one run:
1. wall time of `arblocks build specs/pixelcnn.json` (a fresh process: import, validation, build, causality check);
2. the full dependency map of the PixelCNN spec at 3x8x8 and 3x5x5 in float64 (one mode), with the harness's batched
   backward pass side by side with the obvious alternative (one replica of the image per output, one backward);
3. `check_spec` (train + eval) at the sizes `build` uses;
4. side by side, the check `build` runs on PixelSNAIL and PixelCNN with the value-perturbation walk off and on
   (the state checks always run), and `arblocks check` (every walk target, both modes) of the small shipped specs;
5. with ``--full-size``: `arblocks check` of the CIFAR-size convolutional specs, what it proves at 32x32 (the size
   rule or block by block) and what the block-by-block proof costs on its own;
6. with ``--conv``: float64 convolutions of the check's shapes by ``F.conv2d`` and by one matrix product over the batch
   (``arblocks.core.layers.conv_as_one_product``), and `build`'s check of the largest convolutional specs with the
   product path off (``SMALL_MAP = 0``) and on, side by side.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from arblocks import load_spec
from arblocks.causality.check import build_for_check, check_spec, dependency_map, float64_probe

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def replicas_map(model):
    """Baseline: one copy of the image per output dimension, a single ordinary backward pass."""
    image = model.image
    n = image.channels * image.height * image.width
    x = torch.randint(0, image.levels, (1, image.channels, image.height, image.width))
    xf = model.to_float(x).double().expand(n, -1, -1, -1).clone().requires_grad_(True)
    view = model.head.per_dimension(model.forward_float(xf))
    out = torch.einsum("bckhw,k->bchw", view, torch.randn(view.shape[2], dtype=torch.float64))
    (g,) = torch.autograd.grad(out, xf, torch.eye(n, dtype=torch.float64).reshape(n, *out.shape[1:]))
    return g.abs()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="only part 5: the check at the spec's own size")
    parser.add_argument("--conv", action="store_true", help="only part 6: float64 convolutions at the check's sizes")
    args = parser.parse_args()
    if args.full_size:
        return full_size()
    if args.conv:
        return conv_paths(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    cmd = [sys.executable, "-m", "arblocks", "build", "specs/pixelcnn.json"]
    wall = timed(lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True), args.repeats)
    print(f"arblocks build specs/pixelcnn.json: {wall:.2f} s wall (median of {args.repeats})")

    spec = load_spec(ROOT / "specs/pixelcnn.json")
    for size in (8, 5):
        model = float64_probe(build_for_check(spec, size)).eval()
        dependency_map(model)  # warm-up
        ours = timed(lambda m=model: dependency_map(m), args.repeats)
        base = timed(lambda m=model: replicas_map(m), args.repeats)
        print(f"dependency map 3x{size}x{size}, PixelCNN size, float64: batched backward {ours:.2f} s, replicas {base:.2f} s, ratio {base / ours:.2f}x")

    check = timed(lambda: check_spec(spec), args.repeats)
    print(f"check_spec(pixelcnn) at the automatic size (train + eval + batch independence): {check:.2f} s")

    for name in ("pixelsnail", "pixelcnn"):
        spec = load_spec(ROOT / f"specs/{name}.json")
        off = timed(lambda s=spec: check_spec(s, values=(), train_values=()), args.repeats)
        on = timed(lambda s=spec: check_spec(s), args.repeats)
        print(f"build's check of {name}: gradients + state {off:.2f} s, + value walk {on:.2f} s, ratio {on / off:.2f}x")
    for name in ("pixelcnn_pp_small", "pixelsnail_small", "image_transformer_small", "sparse_transformer_small", "igpt_small", "lmconv_small"):
        path = ROOT / f"specs/{name}.json"
        if path.exists():
            full = timed(lambda p=path: check_spec(load_spec(p), thorough=True), 1)
            print(f"arblocks check {name} (own size where affordable, every walk target, both modes): {full:.1f} s")


def conv_paths(repeats: int) -> None:
    import torch.nn.functional as F

    from arblocks import build_model
    from arblocks.core import layers

    print(f"torch threads: {torch.get_num_threads()}")
    print("| batch | in | out | output | kernel | F.conv2d | one product | ratio |\n|---|---|---|---|---|---|---|---|")
    for batch, c_in, c_out, size, kernel in [(35, 384, 768, 2, (2, 5)), (35, 384, 768, 2, (1, 3)), (40, 160, 320, 4, (2, 3)),
                                             (130, 32, 64, 4, (2, 3)), (40, 160, 320, 8, (2, 3)), (130, 32, 64, 16, (2, 3))]:
        x = torch.randn(batch, c_in, size + kernel[0] - 1, size + kernel[1] - 1, dtype=torch.float64)
        w, b = torch.randn(c_out, c_in, *kernel, dtype=torch.float64), torch.randn(c_out, dtype=torch.float64)
        direct = timed(lambda x=x, w=w, b=b: F.conv2d(x, w, b), repeats)
        product = timed(lambda x=x, w=w, b=b: layers.conv_as_one_product(x, w, b), repeats)
        print(f"| {batch} | {c_in} | {c_out} | {size}x{size} | {kernel[0]}x{kernel[1]} | {direct * 1e3:.1f} ms | {product * 1e3:.1f} ms | {direct / product:.1f}x |")
    print("\n| spec | check size | conv2d | one product | ratio |\n|---|---|---|---|---|")
    small_map = layers.SMALL_MAP
    for name in ("gated_pixelcnn", "pixelcnn_pp", "pixelsnail", "distaug_c10_150m"):
        spec = load_spec(ROOT / "specs" / f"{name}.json")
        full = build_model(spec, device="meta")
        times = []
        for setting in (0, small_map):
            layers.SMALL_MAP = setting
            times.append(timed(lambda spec=spec, full=full: check_spec(spec, full=full), repeats))
        layers.SMALL_MAP = small_map
        size = "x".join(map(str, check_spec(spec, full=full).image))
        print(f"| `{name}` | {size} | {times[0]:.1f} s | {times[1]:.1f} s | {times[0] / times[1]:.1f}x |")


def full_size():
    """`arblocks check` of the 32x32 convolutional specs: its time, its size, and what it says of 32x32."""
    from arblocks import build_model
    from arblocks.causality.block_proof import prove_blocks
    from arblocks.core.ordering import ordering_of

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in ("pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelsnail"):
        spec = load_spec(ROOT / f"specs/{name}.json")
        start = time.perf_counter()
        report = check_spec(spec, thorough=True, static_causality=False)
        total = time.perf_counter() - start
        model = float64_probe(build_for_check(spec, report.image[1:]), private=True)
        full = build_model(spec, device="meta")
        start = time.perf_counter()
        with torch.nn.utils.parametrize.cached():
            proofs = prove_blocks(model, full, ordering_of(spec).rank(spec.image.height, spec.image.width))
        alone = time.perf_counter() - start
        print(f"arblocks check {name}: {total:.1f} s at {'x'.join(map(str, report.image))}, ok={report.ok}; "
              f"at 32x32: {report.full_size.status}; the block proof alone {alone:.1f} s "
              f"({len(set(proofs.proven))} blocks and head proven, {len(set(proofs.uncovered))} not covered)")


if __name__ == "__main__":
    main()
