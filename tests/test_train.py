"""Training: exact resume, kill -9 safety, the non-finite guard, metrics, and the CLI verbs around it."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arblocks import load_spec
from arblocks.cli import main
from arblocks.training import loop as train_module
from arblocks.training.checkpoint import CheckpointError, load, load_model
from arblocks.training.loop import TrainConfig, TrainingError, train

ROOT = Path(__file__).parent.parent
TINY = ROOT / "tests/specs/tiny_digits.json"
FAST = dict(batch_size=16, eval_every=1000, checkpoint_every=1000, log_every=5, eval_batch_size=512)


def weights(path):
    state = load(path)
    return state["model"], state["ema"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_takes_exactly_the_steps_of_an_uninterrupted_one(tmp_path):
    spec = load_spec(TINY)
    straight = train(spec, "digits", tmp_path / "straight", TrainConfig(steps=12, **FAST), progress=False)
    train(spec, "digits", tmp_path / "split", TrainConfig(steps=6, **FAST), progress=False)
    resumed = train(spec, "digits", tmp_path / "split", TrainConfig(steps=12, **FAST), resume=True, progress=False)
    (m1, e1), (m2, e2) = weights(tmp_path / "straight/checkpoint.pt"), weights(tmp_path / "split/checkpoint.pt")
    assert same(m1, m2) and same(e1, e2)
    assert resumed.test_bits_per_dim == straight.test_bits_per_dim
    rows = list(csv.DictReader((tmp_path / "split/metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["split"] == "train"] == [5, 6, 10, 12]
    assert (tmp_path / "split/bits_per_dim.png").stat().st_size > 1000


def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    result = train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=40, **FAST), progress=False)
    rows = [r for r in csv.DictReader((tmp_path / "run/metrics.csv").open()) if r["split"] == "train"]
    assert float(rows[-1]["bits_per_dim"]) < float(rows[0]["bits_per_dim"]) - 0.3
    assert result.test_bits_per_dim is not None and result.skipped_steps == 0
    assert json.loads((tmp_path / "run/run.json").read_text())["config"]["steps"] == 40


@pytest.mark.slow
def test_kill_9_never_leaves_a_torn_checkpoint_and_resume_loses_nothing(tmp_path):
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "arblocks", "train", str(TINY), "--data", "digits", "--out", str(run), "--steps", "300",
               "--batch-size", "16", "--checkpoint-every", "1", "--eval-every", "1000", "--eval-batch-size", "512", "--no-progress"]
    for _ in range(2):
        process = subprocess.Popen(command + (["--resume"] if (run / "checkpoint.pt").exists() else []), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        before = load(run / "checkpoint.pt")["step"] if (run / "checkpoint.pt").exists() else 0
        while time.time() < deadline:
            if (run / "checkpoint.pt").exists() and load(run / "checkpoint.pt")["step"] >= before + 3:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        state = load(run / "checkpoint.pt")  # loads: never torn
        assert 0 < state["step"] < 300
    finished = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    straight = TrainConfig(steps=300, batch_size=16, checkpoint_every=1000, eval_every=1000, eval_batch_size=512)
    train(load_spec(TINY), "digits", tmp_path / "straight", straight, progress=False)
    (m1, e1), (m2, e2) = weights(run / "checkpoint.pt"), weights(tmp_path / "straight/checkpoint.pt")
    assert same(m1, m2) and same(e1, e2)
    assert not list(run.glob(".checkpoint.pt.*.tmp"))  # a kill between write and rename leaves one; resuming removes it


def test_a_non_finite_gradient_skips_the_step_and_keeps_the_weights(tmp_path, monkeypatch):
    real = train_module._gradient_norm
    calls = {"n": 0}

    def flaky(model, clip):
        calls["n"] += 1
        return float("nan") if calls["n"] in (3, 4) else real(model, clip)

    monkeypatch.setattr(train_module, "_gradient_norm", flaky)
    result = train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=8, **FAST), progress=False)
    assert result.skipped_steps == 2
    assert load(tmp_path / "run/checkpoint.pt")["skipped_steps"] == 2
    assert all(torch.isfinite(v).all() for v in load(tmp_path / "run/checkpoint.pt")["model"].values())


def test_a_run_of_non_finite_steps_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "_gradient_norm", lambda model, clip: float("inf"))
    with pytest.raises(TrainingError, match="not finite for 4 steps in a row"):
        train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=8, max_bad_steps=4, **FAST), progress=False)


def test_cli_train_eval_sample(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", str(TINY), "--data", "digits", "--out", run, "--steps", "6", "--batch-size", "16", "--no-progress"]) == 0
    assert "step 6" in capsys.readouterr().out
    assert main(["eval", f"{run}/checkpoint.pt", "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 297 and report["bits_per_dim"] > 0
    model, _ = load_model(f"{run}/checkpoint.pt")
    from arblocks.data import load_data

    data = load_data("digits", "test", model.image)
    nll = model.nll(data.images).double().sum().item()
    assert report["nats_per_image"] == pytest.approx(nll / 297, rel=1e-6)  # every image counted exactly once
    assert main(["sample", f"{run}/checkpoint.pt", "-n", "3", "--out", str(tmp_path / "grid.png"), "--no-progress"]) == 0
    from PIL import Image

    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (2 * 66 + 2, 2 * 66 + 2) and grid.mode == "L"  # 2 x 2 cells of 8x8 pixels scaled by 8, 2-pixel gaps
    assert len(grid.getcolors(256)) > 2


def test_cli_refuses_to_overwrite_a_run_and_to_resume_another_spec(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", str(TINY), "--data", "digits", "--out", run, "--steps", "2", "--batch-size", "16", "--no-progress"]) == 0
    before = (tmp_path / "run/checkpoint.pt").read_bytes()
    assert main(["train", str(TINY), "--data", "digits", "--out", run, "--steps", "2", "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    other = json.loads(TINY.read_text())
    other["body"][0]["channels"] = 8
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert main(["train", str(tmp_path / "other.json"), "--data", "digits", "--out", run, "--resume", "--no-progress"]) == 2
    assert "another spec" in capsys.readouterr().err
    assert (tmp_path / "run/checkpoint.pt").read_bytes() == before  # nothing already written is lost


def test_unsafe_and_foreign_checkpoints_are_refused(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    torch.save({"format": "arblocks-checkpoint/1", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    assert main(["eval", str(tmp_path / "foreign.pt"), "--data", "digits"]) == 2
    assert "not an arblocks checkpoint" in capsys.readouterr().err
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["sample", str(tmp_path / "torn.pt"), "--out", str(tmp_path / "x.png")]) == 2


def test_data_errors_exit_2_with_a_clear_message(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", str(ROOT / "specs/pixelcnn.json"), "--data", "digits", "--out", out, "--steps", "1", "--no-progress"]) == 2
    assert "the data's images are 1x8x8" in capsys.readouterr().err
    assert main(["train", str(TINY), "--data", "npz:/nonexistent.npz", "--out", out, "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["train", str(TINY), "--data", "mnsit:/x", "--out", out, "--no-progress"]) == 2
    assert "did you mean 'mnist'" in capsys.readouterr().err
    assert main(["train", str(TINY), "--data", "digits", "--out", out, "--lr", "-1", "--no-progress"]) == 2
    assert "--lr: must be > 0" in capsys.readouterr().err
    assert not Path(out).exists()


def test_completion_keeps_the_given_rows(tmp_path):
    from arblocks.sampling.sample import NaiveSampler

    train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=3, **FAST), progress=False)
    model, _ = load_model(tmp_path / "run/checkpoint.pt")
    known = torch.randint(0, 16, (1, 1, 8, 8))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:3] = True
    samples = NaiveSampler(model).sample(4, known=known, known_mask=mask, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 15
    assert torch.equal(samples[:, :, :3], known[:, :, :3].expand(4, -1, -1, -1))
    assert not torch.equal(samples[0, :, 3:], samples[1, :, 3:])  # the rest is sampled


def test_ema_warms_up_and_metrics_say_which_weights(tmp_path):
    from arblocks.training.loop import EMA

    layer = torch.nn.Linear(2, 2)
    ema = EMA(layer, 0.9995)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update(layer, step=0)  # decay 1/10 at the first step, not 0.9995
    assert torch.allclose(ema.state["weight"], start + 0.9)
    assert ema.decay_at(10**6) == 0.9995
    train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=6, **FAST), progress=False)
    rows = list(csv.DictReader((tmp_path / "run/metrics.csv").open()))
    assert {(r["split"], r["weights"]) for r in rows} == {("train", "raw"), ("test", "ema")}


def test_resume_drops_a_row_torn_by_a_killed_process(tmp_path):
    spec = load_spec(TINY)
    straight = tmp_path / "straight"
    train(spec, "digits", straight, TrainConfig(steps=12, **FAST), progress=False)
    train(spec, "digits", tmp_path / "split", TrainConfig(steps=6, **FAST), progress=False)
    with (tmp_path / "split/metrics.csv").open("a") as f:
        f.write("10,train,2.9")  # the start of a row, cut by kill -9
    train(spec, "digits", tmp_path / "split", TrainConfig(steps=12, **FAST), resume=True, progress=False)
    rows = list(csv.DictReader((tmp_path / "split/metrics.csv").open()))
    assert [(r["step"], r["split"]) for r in rows] == [("5", "train"), ("6", "train"), ("6", "test"), ("10", "train"), ("12", "train"), ("12", "test")]
    same_steps = {(r["step"], r["split"]): r["bits_per_dim"] for r in csv.DictReader((straight / "metrics.csv").open())}
    assert all(same_steps[(r["step"], r["split"])] == r["bits_per_dim"] for r in rows if (r["step"], r["split"]) in (("5", "train"), ("12", "test")))


def test_tensorboard_event_files_hold_the_metrics_and_sample_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from arblocks.cli import main

    run = tmp_path / "run"
    assert main(["train", str(TINY), "--data", "digits", "--out", str(run), "--steps", "4", "--eval-every", "2", "--log-every", "2",
                 "--batch-size", "8", "--tensorboard", "--tensorboard-samples", "2", "--no-progress"]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"train/bits_per_dim", "train/lr", "train/images_per_s", "test/bits_per_dim", "test/nats_per_image"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("test/bits_per_dim")] == [2, 4]
    rows = [r for r in csv.DictReader((run / "metrics.csv").open()) if r["split"] == "test"]
    assert [round(e.value, 5) for e in events.Scalars("test/bits_per_dim")] == [round(float(r["bits_per_dim"]), 5) for r in rows]
    assert tags["images"] == ["samples"] and len(events.Images("samples")) == 2


def test_training_refuses_a_leaking_spec_unless_told_and_says_so(tmp_path, leaky_installed, capsys):
    spec = tmp_path / "peek.json"
    spec.write_text(json.dumps({"name": "peek", "image": {"channels": 1, "height": 8, "width": 8, "bits": 8},
                                "body": [{"type": "masked_conv", "mask": "A", "channels": 4}, {"type": "peek_below"}], "head": {"type": "categorical"}}))
    out = tmp_path / "run"
    args = ["train", str(spec), "--data", "digits", "--out", str(out), "--steps", "2", "--no-progress"]
    assert main(args) == 2
    assert "fails the causality check" in (err := capsys.readouterr().err) and "--no-check" in err
    assert not (out / "checkpoint.pt").exists()
    assert main([*args, "--no-check"]) == 0
    assert json.loads((out / "run.json").read_text())["causality_check"].startswith("skipped (--no-check)")
    for verb, extra in (("eval", ["--data", "digits"]), ("sample", ["--out", str(tmp_path / "s.png"), "-n", "1", "--no-progress", "--engine", "naive"])):
        capsys.readouterr()
        assert main([verb, str(out / "checkpoint.pt"), *extra]) == 2
        assert "fails the causality check" in capsys.readouterr().err
        assert main([verb, str(out / "checkpoint.pt"), *extra, "--no-check"]) == 0


def test_a_clean_run_records_its_passed_check(tmp_path):
    train(load_spec(TINY), "digits", tmp_path / "run", TrainConfig(steps=1, **FAST), progress=False)
    assert json.loads((tmp_path / "run/run.json").read_text())["causality_check"].startswith("passed on a 1x")
