"""Train small models on real data for a fixed number of steps on the CPU; report test figures and throughput.

    python benchmarks/bpd.py [--scale 1.0] [--only NAME]

Specs with stages (PixelCNN with auxiliary variables) also print each stage's test figures with the final weights.

Needs ../shared/data (see its README). Each run trains with `arblocks.training.loop.train`, then evaluates the whole test
split with the final weights and with the EMA weights, and prints a Markdown row for docs/results.md (columns: run,
parameters, steps x batch, test with the final weights, test with the EMA weights, the last train figure, throughput,
published figures). `--scale` multiplies the number of steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from arblocks.data import load_data
from arblocks.spec.edit import visit
from arblocks.staged.stages import StagedModel, parse_any
from arblocks.training.checkpoint import load_model
from arblocks.training.loop import TrainConfig, evaluate, evaluate_stages, train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def narrowed(name: str, image: dict, changes) -> dict:
    data = json.loads((ROOT / "specs" / name).read_text())
    data["image"] = image
    changes(data)
    return data


def small_pixelcnn(data):
    data["body"][0]["channels"] = 64
    data["body"][1]["times"] = 4
    for block in data["body"][1]["body"][0]["body"]:
        if "channels" in block:
            block["channels"] = 64 if block["channels"] == 128 else 32
    data["body"][3]["channels"] = 64


def small_pixelcnn_pp(data):
    for fields in data["defaults"].values():
        if "channels" in fields:
            fields["channels"] = 32

    def retime(node):
        if node.get("type") == "repeat" and node["times"] in (5, 6):
            node["times"] -= 4  # nr_resnet 1 (2 in the down pass)

    visit(data["body"], retime)


def widened(width: int):
    """A spec's conv, deconv and shifted-conv channels (its defaults) set to ``width``."""

    def change(data):
        for fields in data["defaults"].values():
            if "channels" in fields:
                fields["channels"] = width

    return change


def one_level(width: int) -> dict:
    """The pyramid's first level (u/ul streams, 3 gated-resnet pairs, no resampling) as a model of the whole 32x32
    image: the single-stage model of the same family."""
    data = json.loads((ROOT / "specs" / "pixelcnn_aux_pyramid_small.json").read_text())
    widened(width)(data)
    level = data["stages"][0]
    return {"name": "one-level", "image": data["image"], "inputs": data["inputs"], "defaults": data["defaults"], "body": level["body"], "head": level["head"]}


def without_attention(data):
    """The attention-at-8x8 hybrid's U-Net alone: its attention modules (and their background) removed."""
    data["body"] = [node for node in data["body"] if node.get("name") != "attention at 8x8"]
    data["inputs"].pop("background")


def rows_of(width: int):
    """Attention patterns sized to a one-channel image of this width: local blocks of 2 rows, a stride of one row."""

    def change(data):
        block = data["defaults"]["transformer_block"]
        patterns = block["pattern"] if isinstance(block["pattern"], list) else [block["pattern"]]
        for pattern in patterns:
            pattern.update({"block": 2 * width} if pattern["type"] == "local_1d" else {"stride": width})

    return change


RUNS = {
    "pixelcnn-binarized-mnist": dict(
        spec=lambda: narrowed("pixelcnn_binarized_mnist.json", {"channels": 1, "height": 28, "width": 28, "bits": 1}, small_pixelcnn),
        data=f"npz:{DATA / 'binarized_mnist.npz'}", steps=600, batch=32, unit="nats", published="PixelCNN 81.30 nats (van den Oord et al. 2016); pytorch-generative's small PixelCNN 81.45",
    ),
    "pixelcnn-pp-mnist": dict(
        spec=lambda: narrowed("pixelcnn_pp.json", {"channels": 1, "height": 28, "width": 28, "bits": 8}, small_pixelcnn_pp),
        data=f"npz:{DATA / 'mnist.npz'}", steps=200, batch=32, unit="bits/dim", published="no standard figure for 8-bit MNIST in the seed papers",
    ),
    "pixelcnn-pp-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_pp.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, small_pixelcnn_pp),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=200, batch=32, unit="bits/dim", published="PixelCNN++ 2.92 bits/dim on the full CIFAR-10 (53.7M parameters, days of GPU training)",
    ),
    "aux-single-level-cifar10-subset": dict(
        spec=lambda: one_level(56), data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim",
        published="single-stage baseline of the auxiliary-variable models' own family (their first level over the whole image)",
    ),
    "aux-pixelcnn-pp-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_pp.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, small_pixelcnn_pp),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim", published="single-stage PixelCNN++ baseline, same steps",
    ),
    "aux-grayscale-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_aux_grayscale_small.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, widened(31)),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim", published="Kolesnikov & Lampert 2017 report full CIFAR-10 figures of full-size models; not comparable with a 400-step CPU run",
    ),
    "aux-pyramid-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_aux_pyramid_small.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, widened(24)),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim", published="as above",
    ),
    "attention8-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_pp_attention8_small.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, lambda data: None),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim",
        published="the hybrid of issue 18 (class-conditional PixelCNN++ U-Net, attention at 8x8 only); no published figure",
    ),
    "attention8-unet-only-cifar10-subset": dict(
        spec=lambda: narrowed("pixelcnn_pp_attention8_small.json", {"channels": 3, "height": 32, "width": 32, "bits": 8}, without_attention),
        data=f"npz:{DATA / 'cifar10_subset.npz'}", steps=400, batch=32, unit="bits/dim", published="the same U-Net without its attention modules",
    ),
    "pixelcnn-pp-digits": dict(
        spec=lambda: narrowed("pixelcnn_pp.json", {"channels": 1, "height": 8, "width": 8, "bits": 8}, small_pixelcnn_pp),
        data="digits", steps=600, batch=32, unit="bits/dim", published="no published figure for the 8x8 digits",
    ),
    "image-transformer-digits": dict(
        spec=lambda: narrowed("image_transformer_small.json", {"channels": 1, "height": 8, "width": 8, "bits": 8}, rows_of(8)),
        data="digits", steps=600, batch=32, unit="bits/dim", published="no published figure for the 8x8 digits",
    ),
    "sparse-transformer-digits": dict(
        spec=lambda: narrowed("sparse_transformer_small.json", {"channels": 1, "height": 8, "width": 8, "bits": 8}, rows_of(8)),
        data="digits", steps=600, batch=32, unit="bits/dim", published="no published figure for the 8x8 digits",
    ),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    for name, run in RUNS.items():
        if args.only and args.only != name:
            continue
        spec = parse_any(run["spec"]())
        steps = max(1, int(run["steps"] * args.scale))
        config = TrainConfig(steps=steps, batch_size=run["batch"], eval_every=10**9, checkpoint_every=10**9, log_every=max(1, steps // 10),
                             eval_batch_size=250, ema_decay=0.995, lr=2e-3)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            result = train(spec, run["data"], out, config, progress=False)
            elapsed = time.perf_counter() - start
            model, _ = load_model(Path(out) / "checkpoint.pt", weights="raw")
            test = load_data(run["data"], "test", spec.image)
            stages = None
            if isinstance(model, StagedModel):
                raw_bpd, raw_nats, stages = evaluate_stages(model, test, 250, torch.device("cpu"))
            else:
                raw_bpd, raw_nats = evaluate(model, test, 250, torch.device("cpu"))

        def show(bpd, nats, unit=run["unit"]):
            return f"{nats:.2f} nats" if unit == "nats" else f"{bpd:.3f} bits/dim"

        print(f"| {name} | {model.num_parameters():,} | {steps} x {run['batch']} | {show(raw_bpd, raw_nats)} | "
              f"{show(result.test_bits_per_dim, result.test_nats_per_image)} | {result.train_bits_per_dim:.3f} bits/dim | "
              f"{steps * run['batch'] / elapsed:.1f} img/s incl. eval, {elapsed / 60:.1f} min | {run['published']} |", flush=True)
        for figures in stages or []:  # final weights
            print(f"|   stage {figures['stage']} ({', '.join(f'{k} {v}' for k, v in figures['view'].items())}) | | | {figures['bits_per_image_dim']:.3f} of the image's bits/dim "
                  f"({figures['bits_per_dim_own']:.3f} bits per own dimension, {figures['nats_per_image']:.1f} nats) | | | | |", flush=True)


if __name__ == "__main__":
    main()
