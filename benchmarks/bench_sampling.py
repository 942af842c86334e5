"""Images per second of the cached sampling engine against the naive one (a full forward pass per draw), in one run.

    python benchmarks/bench_sampling.py [--models pixelcnn_pp_small,pixelsnail_small,...] [--batches 1,16] [--threads 1]
                                        [--device cpu] [--naive-pixels 64] [--full-spec]

For each model and batch size: the cached engine draws whole images (timed); the naive engine draws the first
``--naive-pixels`` pixels of the generation order with the rest of the image given (a completion: the same draws,
in the same order, as the start of a full run; its cost per draw does not depend on the draw, so images/s follow
exactly from it), and the cached engine draws the same completion: their images must be equal (same seed),
which the script asserts. ``--naive-pixels 0`` runs the naive engine on whole images too. Cache memory: every
stream buffer (one forward pass's block outputs) plus the blocks' own caches (intermediates of two-convolution
blocks, keys and values). ``--full-spec`` adds ``specs/pixelcnn_pp.json`` itself (for a GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pixelcnn_pp import spec_model  # noqa: E402

from arblocks import build_model, load_spec  # noqa: E402
from arblocks.sampling.cached import CachedSampler, events_of  # noqa: E402
from arblocks.sampling.sample import NaiveSampler  # noqa: E402

SHIPPED = ["pixelsnail_small", "image_transformer_small", "sparse_transformer_small", "igpt_small", "lmconv_small"]


def make(name: str, device):
    torch.manual_seed(0)
    if name == "pixelcnn_pp_small":
        model = spec_model(32, 1)  # nr_filters 32, nr_resnet 1, 3x32x32
    else:
        model = build_model(load_spec(ROOT / "specs" / f"{name}.json"))
    return model.to(device).eval()


def conditioning(model, n, device):
    return {k: model.inputs[k].example(n, torch.Generator().manual_seed(0)).to(device) for k in model.provided_inputs}


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def first_pixels_unknown(sampler, k: int) -> torch.Tensor:
    """[H, W] bool: known everywhere but the first ``k`` pixels of the generation order."""
    rank = sampler.rank
    return rank >= k


def run(name: str, batch: int, device, naive_pixels: int) -> dict:
    model = make(name, device)
    image = model.image
    cond = conditioning(model, batch, device)
    cached = CachedSampler(model)
    naive = NaiveSampler(model)
    draws_per_image = len(events_of(model, cached.rank, cached.joint, None))

    sync(device)
    start = time.perf_counter()
    images = cached.sample(batch, conditioning=cond, generator=torch.Generator(device).manual_seed(1))
    sync(device)
    cached_s = time.perf_counter() - start
    memory = cached.last_run

    k = image.height * image.width if naive_pixels <= 0 else min(naive_pixels, image.height * image.width)
    known = torch.randint(0, image.levels, (1, image.channels, image.height, image.width), generator=torch.Generator().manual_seed(2)).to(device)
    mask = first_pixels_unknown(cached, k)
    sync(device)
    start = time.perf_counter()
    a = naive.sample(batch, conditioning=cond, known=known, known_mask=mask, generator=torch.Generator(device).manual_seed(3))
    sync(device)
    naive_part_s = time.perf_counter() - start
    b = cached.sample(batch, conditioning=cond, known=known, known_mask=mask, generator=torch.Generator(device).manual_seed(3))
    assert torch.equal(a, b), f"{name}: the engines drew different images"
    part_draws = len(events_of(model, cached.rank, cached.joint, mask))
    naive_s = naive_part_s / part_draws * draws_per_image
    return {
        "model": name, "image": f"{image.channels}x{image.height}x{image.width}", "batch": batch, "draws": draws_per_image,
        "naive_images_per_s": batch / naive_s, "cached_images_per_s": batch / cached_s, "speedup": naive_s / cached_s,
        "naive_measured_draws": part_draws, "cache_mib": memory["cache_bytes"] / 2**20, "streams_mib": memory["stream_bytes"] / 2**20,
        "equal": True, "shape": tuple(images.shape),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="pixelcnn_pp_small," + ",".join(SHIPPED))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--naive-pixels", type=int, default=64, help="pixels the naive engine draws per measurement (0: whole images)")
    parser.add_argument("--full-spec", action="store_true", help="also specs/pixelcnn_pp.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models.split(",") + (["pixelcnn_pp"] if args.full_spec else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}")
    print(f"{'model':26} {'image':8} {'batch':>5} {'draws':>5} {'naive img/s':>12} {'cached img/s':>13} {'speedup':>8} {'cache MiB':>10} {'streams MiB':>12}")
    for name in models:
        for batch in map(int, args.batches.split(",")):
            r = run(name, batch, args.device, args.naive_pixels)
            if args.json:
                print(json.dumps(r))
            print(f"{r['model']:26} {r['image']:8} {r['batch']:>5} {r['draws']:>5} {r['naive_images_per_s']:>12.4f} {r['cached_images_per_s']:>13.3f} "
                  f"{r['speedup']:>7.1f}x {r['cache_mib']:>10.1f} {r['streams_mib']:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
