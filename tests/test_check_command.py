"""`arblocks check` and `arblocks receptive-field`."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from arblocks.causality.check import check_model
from arblocks.cli import main
from tests.helpers import build, run_with_leaky_plugin_installed

ROOT = Path(__file__).parent.parent
SPECS = ROOT / "specs"


def small(tmp_path, name, **changes):
    """The shipped spec on a smaller image, written next to the test (the CLI reads files)."""
    data = json.loads((SPECS / name).read_text())
    data["image"].update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.slow
def test_check_reports_pixelcnns_blind_spot_where_it_is(tmp_path, capsys):
    path = small(tmp_path, "pixelcnn_binarized_mnist.json", height=8, width=8)
    assert main(["check", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["modes"]["train"]["batch_independent"] and report["modes"]["eval"]["ok"]
    coverage = torch.tensor(report["coverage_per_output"])[0]  # [H, W]
    # 7x7 mask A then 3x3 mask B: the pixels more than k + 2 columns to the right, k rows up, are never seen
    assert coverage[0].eq(1).all() and coverage[:, 4:].eq(1).all()
    assert coverage[1:, :4].lt(1).all()
    assert report["blind_spot"]["output"] == [0, 1, 0]
    assert sorted(map(tuple, report["blind_spot"]["unseen"])) == [(0, 0, 4), (0, 0, 5), (0, 0, 6), (0, 0, 7)]


def test_check_text_report(tmp_path, capsys):
    path = small(tmp_path, "pixelcnn_binarized_mnist.json", height=6, width=6)
    assert main(["check", path, "--mode", "eval"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "eval mode: 0 violation(s); batch independent" in out and "train mode" not in out
    assert "blind spot of the worst output (row 1, col 0, channel 0)" in out and "(row 0, col 4) channel(s) 0" in out
    assert len([line for line in out.splitlines() if line.startswith("  0.") or line.startswith("  1.")]) == 6


@pytest.mark.parametrize("name", ["pixelsnail_small.json"])
def test_check_full_coverage_specs(tmp_path, capsys, name):
    assert main(["check", small(tmp_path, name, height=6, width=6), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["coverage"]["min"] == 1.0 and report["blind_spot"] is None


@pytest.mark.slow
def test_check_catches_a_leaking_plugin_block_at_the_right_positions(tmp_path):
    out = run_with_leaky_plugin_installed(tmp_path, 4, "check", "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    bad = {(tuple(v["output"]), tuple(v["input"])) for v in report["modes"]["eval"]["violations"]}
    assert ((0, 0, 1), (0, 1, 0)) in bad  # output (0,1) sees input (1,0) through the features of the pixel below
    assert all(v["input"][1:] >= v["output"][1:] for v in report["modes"]["eval"]["violations"])


def test_perturbation_method_agrees_with_gradients():
    model = build([{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6}, {"type": "masked_conv", "kernel_size": 3}], size=5)
    a, b = check_model(model, method="gradient"), check_model(model, method="perturbation")
    assert a.ok and b.ok and torch.equal(a.modes["eval"].seen, b.modes["eval"].seen)


def test_receptive_field_png_side_by_side(tmp_path, capsys):
    out = tmp_path / "rf.png"
    args = ["receptive-field", str(SPECS / "pixelcnn.json"), "--pixel", "5,1", "--size", "8", "--out", str(out),
            "--compare", str(SPECS / "pixelsnail_small.json"), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["spec"] for f in report["fields"]] == ["pixelcnn", "pixelsnail_small"]
    assert report["fields"][0]["coverage"] < 1 and report["fields"][1]["coverage"] == 1
    picture = Image.open(out)
    assert picture.size == tuple(report["size"]) and picture.size[0] > 2 * 8 * 32
    colours = {c for _, c in picture.getcolors(1 << 20)}
    assert (225, 60, 60) in colours, "PixelCNN's blind spot is drawn in red"
    assert (40, 90, 220) in colours and len(colours) > 10


def test_receptive_field_bad_pixel(tmp_path, capsys):
    assert main(["receptive-field", str(SPECS / "pixelcnn.json"), "--pixel", "9,0", "--size", "8", "--out", str(tmp_path / "x.png")]) == 2
    assert "outside the 8x8 image" in capsys.readouterr().err
    assert main(["receptive-field", str(SPECS / "pixelcnn.json"), "--pixel", "a", "--out", str(tmp_path / "x.png")]) == 2


def test_perturbation_method_is_exact_under_dropout_in_training_mode():
    body = [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6}, {"type": "dropout", "p": 0.3}, {"type": "masked_conv", "kernel_size": 3}]
    report = check_model(build(body, size=5), method="perturbation")
    assert report.ok, report.summary()
