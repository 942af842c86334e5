"""Training and evaluation in bf16 and fp16 (loss scaling), channels-last, and compiled."""

import csv

import pytest
import torch

from arblocks import load_spec
from arblocks.cli import main
from arblocks.training.checkpoint import load, load_model
from arblocks.training.loop import TrainConfig, train
from tests.test_train import FAST, TINY, same, weights


def train_rows(run):
    return [float(r["bits_per_dim"]) for r in csv.DictReader((run / "metrics.csv").open()) if r["split"] == "train"]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_resumes_exactly_and_leaves_float32_checkpoints(tmp_path, precision):
    spec = load_spec(TINY)
    config = dict(FAST, precision=precision)
    straight = train(spec, "digits", tmp_path / "straight", TrainConfig(steps=30, **config), progress=False)
    rows = train_rows(tmp_path / "straight")
    assert rows[-1] < rows[0] - 0.3 and straight.skipped_steps <= 2  # fp16 may skip a step while its scale settles
    state = load(tmp_path / "straight/checkpoint.pt")
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert ("scaler" in state) == (precision == "fp16")
    train(spec, "digits", tmp_path / "split", TrainConfig(steps=15, **config), progress=False)
    train(spec, "digits", tmp_path / "split", TrainConfig(steps=30, **config), resume=True, progress=False)
    (m1, e1), (m2, e2) = weights(tmp_path / "straight/checkpoint.pt"), weights(tmp_path / "split/checkpoint.pt")
    assert same(m1, m2) and same(e1, e2)  # the loss scale is part of the checkpoint


def test_old_runs_with_dtype_still_resume():
    assert TrainConfig.model_validate({"dtype": "bf16"}).precision == "bf16"


def test_channels_last_follows_the_contiguous_run(tmp_path):
    spec = load_spec(TINY)
    train(spec, "digits", tmp_path / "plain", TrainConfig(steps=10, **FAST), progress=False)
    train(spec, "digits", tmp_path / "last", TrainConfig(steps=10, channels_last=True, **FAST), progress=False)
    assert train_rows(tmp_path / "last") == pytest.approx(train_rows(tmp_path / "plain"), abs=1e-4)
    model, _ = load_model(tmp_path / "last/checkpoint.pt")  # contiguous tensors: loads into any model
    assert all(p.is_contiguous() for p in model.parameters())


@pytest.mark.slow
def test_a_compiled_run_matches_the_eager_one(tmp_path):
    """aot_eager traces the forward and backward passes as one graph each, as inductor would compile them."""
    spec = load_spec(TINY)
    train(spec, "digits", tmp_path / "eager", TrainConfig(steps=6, **FAST), progress=False)
    train(spec, "digits", tmp_path / "compiled", TrainConfig(steps=6, compile=True, compile_backend="aot_eager", **FAST), progress=False)
    assert train_rows(tmp_path / "compiled") == pytest.approx(train_rows(tmp_path / "eager"), abs=1e-5)


def test_cli_precision_options(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(TINY), "--data", "digits", "--out", str(run), "--steps", "3", "--batch-size", "8", "--no-progress",
                 "--precision", "bf16", "--channels-last", "--eval-limit", "64"]) == 0
    capsys.readouterr()
    figures = {}
    for precision in ("fp32", "bf16"):
        assert main(["eval", str(run / "checkpoint.pt"), "--precision", precision, "--channels-last", "--json", "--no-progress"]) == 0
        figures[precision] = float(capsys.readouterr().out.split('"bits_per_dim": ')[1].split(",")[0])
    assert figures["bf16"] == pytest.approx(figures["fp32"], abs=0.05)
    assert main(["train", str(TINY), "--data", "digits", "--out", str(tmp_path / "bad"), "--precision", "fp8"]) == 2
