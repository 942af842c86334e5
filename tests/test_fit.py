"""Training from Python: ``arblocks.fit`` is the command's loop (bitwise the same run), takes models built in Python
and images in memory, calls callbacks, and ``save_checkpoint`` writes what ``eval`` and ``sample`` take."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import arblocks
from arblocks.cli import main
from arblocks.training import Callback, SaveSamples, TrainingError
from arblocks.training.checkpoint import load

ROOT = Path(__file__).parent.parent
TINY = ROOT / "tests/specs/tiny_digits.json"
QUICK = dict(steps=6, batch_size=16, eval_every=3, checkpoint_every=3, log_every=2, eval_batch_size=512, eval_limit=64)
FLAGS = ["--steps", "6", "--batch-size", "16", "--eval-every", "3", "--checkpoint-every", "3", "--log-every", "2", "--eval-batch-size", "512",
         "--eval-limit", "64", "--no-progress"]


def tensors_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def figures(run: Path):
    """metrics.csv without its timing column."""
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader((run / "metrics.csv").open())]


def test_fit_from_python_is_bitwise_the_command_line_run(tmp_path):
    assert main(["train", str(TINY), "--data", "digits", "--out", str(tmp_path / "cli"), *FLAGS]) == 0
    result = arblocks.fit(str(TINY), "digits", tmp_path / "python", progress=False, **QUICK)
    torch.manual_seed(0)  # the seed a run builds its model after
    model = arblocks.build_model(arblocks.load_spec(TINY))
    given = arblocks.fit(model, "digits", tmp_path / "model", progress=False, **QUICK)
    cli = load(tmp_path / "cli/checkpoint.pt")
    for run in ("python", "model"):
        state = load(tmp_path / run / "checkpoint.pt")
        assert tensors_equal(state["model"], cli["model"]) and tensors_equal(state["ema"], cli["ema"])
        assert figures(tmp_path / run) == figures(tmp_path / "cli")
    assert given.model is not model and tensors_equal(given.model.state_dict(), cli["ema"]) and not given.model.training
    assert tensors_equal(model.state_dict(), cli["model"])  # the given model was trained in place
    assert result.step == 6 and f"{result.test_bits_per_dim:.6f}" == figures(tmp_path / "cli")[-1]["bits_per_dim"]


def test_fit_on_images_in_memory_with_callbacks(tmp_path):
    digits = arblocks.load_data("digits", "train", arblocks.ImageSpec(channels=1, height=8, width=8, bits=8))
    images = digits.images[:, 0].numpy()  # [N, H, W] uint8
    calls = []

    class Record(Callback):
        def on_start(self, run, step):
            calls.append(("start", step))

        def on_log(self, run, step, row):
            calls.append(("log", step, round(row["bits_per_dim"], 6)))

        def on_evaluate(self, run, step, row, model):
            calls.append(("evaluate", step, not model.training))

        def on_checkpoint(self, run, step, path):
            calls.append(("checkpoint", step, path.is_file()))

        def on_end(self, run, result):
            calls.append(("end", result.step))

    samples = SaveSamples(count=4)
    result = arblocks.fit(TINY, (images[:1000], digits.labels[:1000]), tmp_path / "run", test_data=images[1000:1100], progress=False,
                          callbacks=[Record(), samples], **QUICK)
    kinds = [c[0] for c in calls]
    assert kinds == ["start", "log", "evaluate", "checkpoint", "log", "log", "evaluate", "checkpoint", "end"]  # logs at 2, 4, 6; the rest at 3, 6
    logged = [r for r in figures(tmp_path / "run") if r["split"] == "train"]
    assert [c[2] for c in calls if c[0] == "log"] == [round(float(r["bits_per_dim"]), 6) for r in logged]
    assert all(c[2] for c in calls if c[0] in ("evaluate", "checkpoint"))
    assert [p.name for p in samples.written] == ["step_3.png", "step_6.png"] and all(p.stat().st_size > 0 for p in samples.written)
    assert result.test_bits_per_dim is not None
    assert json.loads((tmp_path / "run/run.json").read_text())["data"] is None  # nothing to evaluate from again
    assert main(["eval", str(tmp_path / "run/checkpoint.pt"), "--no-check"]) == 2  # so eval asks for --data
    with pytest.raises(TrainingError, match="test split too"):
        arblocks.fit(TINY, images, tmp_path / "other", progress=False, **QUICK)
    with pytest.raises(arblocks.SpecError, match="steps"):
        arblocks.fit(TINY, "digits", tmp_path / "bad", steps=0)


def test_save_checkpoint_of_a_model_built_in_python_feeds_eval_and_sample(tmp_path, capsys):
    torch.manual_seed(0)
    model = arblocks.build_model(arblocks.load_spec(TINY))
    path = arblocks.save_checkpoint(model, tmp_path / "built")
    assert path == tmp_path / "built/checkpoint.pt"
    loaded, info = arblocks.load_checkpoint(path)
    assert tensors_equal(loaded.state_dict(), model.state_dict()) and info["step"] == 0
    assert main(["eval", str(path), "--data", "digits", "--json", "--no-progress"]) == 0
    bpd = json.loads(capsys.readouterr().out)["bits_per_dim"]
    assert 3.5 < bpd < 6  # an untrained 4-bit model: about log2(16) bits
    assert main(["sample", str(path), "-n", "2", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    with pytest.raises(TrainingError, match="cannot be resumed"):
        arblocks.fit(TINY, "digits", tmp_path / "built", resume=True, progress=False, steps=2)


@pytest.mark.slow
def test_transforms_from_the_command_line_train_resume_exactly_and_evaluate_as_recorded(tmp_path, capsys):
    six = ["--set", "image.height=6", "--set", "image.width=6"]
    transforms = ["--random-crop", "6", "--hflip", "--bits", "4"]
    flags = [f for f in FLAGS if f not in ("6",)]
    steps = flags.index("--steps")
    straight = [*flags[:steps], "--steps", "6", *flags[steps + 1 :]]
    assert main(["train", str(TINY), *six, "--data", "digits", "--out", str(tmp_path / "a"), *transforms, *straight]) == 0
    assert main(["train", str(TINY), *six, "--data", "digits", "--out", str(tmp_path / "b"), *transforms, *straight[:steps], "--steps", "3",
                 *straight[steps + 2 :]]) == 0
    assert main(["train", str(TINY), *six, "--data", "digits", "--out", str(tmp_path / "b"), *transforms, "--resume", *straight]) == 0
    a, b = load(tmp_path / "a/checkpoint.pt"), load(tmp_path / "b/checkpoint.pt")
    assert tensors_equal(a["model"], b["model"]) and a["config"]["transforms"]["random_crop"] == 6
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "a/checkpoint.pt"), "--json", "--no-check", "--no-progress"]) == 0  # the centre 6x6, as recorded
    recorded = json.loads(capsys.readouterr().out)["bits_per_dim"]
    assert main(["eval", str(tmp_path / "a/checkpoint.pt"), "--json", "--no-check", "--no-progress", "--resize", "6"]) == 0  # another view
    assert json.loads(capsys.readouterr().out)["bits_per_dim"] != recorded
    assert main(["train", str(TINY), "--data", "digits", "--out", str(tmp_path / "c"), "--resize", "big"]) == 2
    assert "--resize" in capsys.readouterr().err


def test_images_in_memory_take_several_layouts():
    from arblocks.training.fit import as_data

    grey = np.zeros((5, 4, 4), np.uint8)
    assert as_data(grey, "data").images.shape == (5, 1, 4, 4)
    assert as_data(torch.zeros(5, 8, 8, 3, dtype=torch.uint8), "data").images.shape == (5, 3, 8, 8)
    with_labels = as_data((grey, [0, 1, 2, 3, 4]), "data")
    assert with_labels.labels.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(TrainingError, match="3 labels for 5 images"):
        as_data((grey, [0, 1, 2]), "data")
    with pytest.raises(arblocks.ArblocksError, match="integer images"):
        as_data(np.zeros((5, 4, 4), np.float32), "data")
