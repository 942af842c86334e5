"""The Python API a notebook user reaches for: loading a checkpoint, a block by its path, the parameter table."""

import json
from pathlib import Path

import pytest
import torch

import arblocks
from arblocks.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_blocks_are_addressable_by_their_paths_and_labels_and_the_table_matches_build():
    model = arblocks.build_model(arblocks.load_spec(ROOT / "specs/pixelcnn_pp.json"), device="meta")
    assert type(model.block("/body/1")).__name__ == "DownShiftedConv"
    assert model.block("image and ones") is model.block("/body/0")  # a named block by its name or its path
    copy = model.block("/body/5[1]/body/0[2]/body/1")  # a repeat's copies and nested repeats, as the build table writes them
    assert type(copy).__name__ == "GatedResnet" and copy.config.conv == "down_right_shifted"
    assert len(model.block("/body/5")) == 2 * (2 * 5 + 2)  # a container: the modules of its blocks
    with pytest.raises(KeyError, match="did you mean '/body/8'"):
        model.block("/body/99")
    table = model.parameter_table()
    assert sum(row["parameters"] for row in table if row["depth"] == 0) == model.num_parameters() == 53_659_080  # the head's row included
    assert len(model.block("/body/5/body/0/body/0")) == 10  # one block's copies: 2 x 5 of the nested repeats
    assert table[1] == {"label": "/body/1", "type": "down_shifted_conv", "output": "160x32x32", "parameters": 4160, "depth": 0, "state": "above"}


def test_load_checkpoint_gives_the_trained_model_and_its_record(tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(ROOT / "tests/specs/tiny_digits.json"), "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "8",
                 "--no-progress"]) == 0
    model, info = arblocks.load_checkpoint(run / "checkpoint.pt")
    assert info["step"] == 2 and info["config"]["batch_size"] == 8 and info["spec"].name == "tiny-digits"
    assert not model.training
    raw, _ = arblocks.load_checkpoint(run / "checkpoint.pt", weights="raw")
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), raw.state_dict().values()))
    images = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 8, 8)


def test_the_cli_says_one_thing_one_way(tmp_path, capsys):
    """build --size is check's --size; eval --eval-batch-size is train's; eval reads its data from the run's record;
    training can evaluate on a subset; resuming a finished run says so."""
    assert main(["build", str(ROOT / "tests/specs/tiny_digits.json"), "--size", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["causality"]["image"][1:] == [4, 4]
    run = tmp_path / "run"
    assert main(["train", str(ROOT / "tests/specs/tiny_digits.json"), "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "8",
                 "--eval-limit", "20", "--no-progress"]) == 0
    capsys.readouterr()
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines() if ",test," in line]
    assert rows and all(float(r[3]) > 0 for r in rows)
    assert main(["eval", str(run / "checkpoint.pt"), "--eval-batch-size", "100", "--json", "--no-progress"]) == 0  # data: the run's own
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 297 and report["split"] == "test"  # the whole digits test split (training evaluated 20 of them)
    assert main(["train", str(ROOT / "tests/specs/tiny_digits.json"), "--data", "digits", "--out", str(run), "--steps", "2", "--resume"]) == 2
    assert "has finished its 2 steps" in capsys.readouterr().err
