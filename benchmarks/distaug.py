"""Distribution Augmentation against plain training on the 4,000-image CIFAR-10 subset, at equal steps.

    python benchmarks/distaug.py run distaug|plain [--steps 1000] [--eval-every 100] [--out runs/distaug]
    python benchmarks/distaug.py report [--out runs/distaug] [--plot docs/figures/distaug_cifar10_subset.png]

`run` trains `specs/distaug_pixelcnn_pp_small.json` (rotations and transpositions, the model told which) or the same
network without augmentation (`plain`: the spec's `augmentation` section and the gated resnets' label removed), with
the same seed, batch, learning rate and schedule, evaluating the whole test split with the EMA weights every
`--eval-every` steps. The two runs are independent processes (run them side by side, one per core). `report` prints
each run's best and last test bits/dim and writes one plot of both runs' curves. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from arblocks import parse_spec
from arblocks.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
DATA = f"npz:{ROOT.parent / 'shared' / 'data' / 'cifar10_subset.npz'}"
RUNS = ("distaug", "plain")


def spec_of(run: str) -> dict:
    data = json.loads((ROOT / "specs" / "distaug_pixelcnn_pp_small.json").read_text())
    if run == "plain":
        del data["augmentation"]
        del data["defaults"]["gated_resnet"]["label"]
        data["name"] = "pixelcnn-pp-small-plain"
    return data


def run(name: str, steps: int, eval_every: int, out: Path) -> None:
    config = TrainConfig(steps=steps, batch_size=32, lr=2e-3, ema_decay=0.995, eval_every=eval_every, eval_batch_size=250,
                         checkpoint_every=eval_every, log_every=max(1, eval_every // 4), seed=0)
    result = train(parse_spec(spec_of(name)), DATA, out / name, config, resume=(out / name / "checkpoint.pt").exists(), progress=False)
    print(f"{name}: step {result.step}, test {result.test_bits_per_dim:.4f} bits/dim", flush=True)


def curves(out: Path, name: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {"train": [], "test": []}
    with (out / name / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            series[row["split"]].append((int(row["step"]), float(row["bits_per_dim"])))
    return series


def report(out: Path, plot: Path | None) -> None:
    found = {name: curves(out, name) for name in RUNS if (out / name / "metrics.csv").exists()}
    for name, series in found.items():
        best = min(series["test"], key=lambda p: p[1])
        last = series["test"][-1]
        print(f"| {name} | {last[0]} x 32 | **{best[1]:.3f}** (step {best[0]}) | {last[1]:.3f} | {series['train'][-1][1]:.3f} |")
    if plot is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for (name, series), colour in zip(found.items(), ("tab:blue", "tab:orange")):
        for split, style in (("train", ":"), ("test", "-")):
            steps, values = zip(*series[split])
            ax.plot(steps, values, style, color=colour, marker="o" if split == "test" else None, label=f"{name}, {split}")
    ax.set_xlabel("step (batch 32)")
    ax.set_ylabel("bits per dimension (test: EMA weights, identity)")
    ax.set_title("Distribution Augmentation vs plain training, CIFAR-10 subset (4,000 images)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot)
    plt.close(fig)
    print(f"wrote {plot}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["run", "report"])
    parser.add_argument("name", nargs="?", choices=RUNS)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "distaug")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "run":
        if args.name is None:
            parser.error("run needs distaug or plain")
        run(args.name, args.steps, args.eval_every, args.out)
    else:
        report(args.out, args.plot)


if __name__ == "__main__":
    main()
