"""The Image GPT palette: k-means colours fitted on training pixels, saved with the model, used by eval and sample."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from arblocks.cli import main
from arblocks.data.palette import colours, fit_palette, quantize
from arblocks.training.checkpoint import load

TINY = Path(__file__).parent / "specs/igpt_tiny.json"
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]], dtype=np.uint8)


def coloured_images(n, seed):
    rng = np.random.default_rng(seed)
    return COLOURS[rng.integers(0, 4, (n, 8, 8))]  # [N, 8, 8, 3]


def test_kmeans_finds_the_colours_and_quantizes_to_them():
    images = torch.from_numpy(coloured_images(20, 0)).permute(0, 3, 1, 2).contiguous()
    palette = fit_palette(images, 4)
    assert sorted(map(tuple, palette.round().int().tolist())) == sorted(map(tuple, COLOURS.tolist()))
    tokens = quantize(images, palette)
    assert tokens.shape == (20, 1, 8, 8) and torch.equal(colours(tokens, palette), images)


@pytest.mark.slow
def test_train_eval_sample_with_a_palette(tmp_path, capsys):
    np.savez(tmp_path / "rgb.npz", x_train=coloured_images(64, 1), x_test=coloured_images(16, 2))
    run = str(tmp_path / "run")
    data = f"npz:{tmp_path / 'rgb.npz'}"
    assert main(["train", str(TINY), "--data", data, "--out", run, "--steps", "4", "--batch-size", "8", "--palette", "16", "--no-progress"]) == 0
    palette = load(f"{run}/checkpoint.pt")["palette"]
    assert palette.shape == (16, 3)
    capsys.readouterr()
    assert main(["eval", f"{run}/checkpoint.pt", "--data", data, "--json"]) == 0
    assert '"images": 16' in capsys.readouterr().out
    assert main(["sample", f"{run}/checkpoint.pt", "-n", "2", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    grid = Image.open(tmp_path / "s.png")
    assert grid.mode == "RGB"
    used = {c for _, c in grid.getcolors(1 << 16)} - {(255, 255, 255)}
    assert used <= {tuple(int(v) for v in c) for c in palette.round().clamp(0, 255).int().tolist()}
