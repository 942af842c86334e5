"""torchrun with two CPU processes (gloo) matches one process with the same global batch."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arblocks.training.checkpoint import load

ROOT = Path(__file__).parent.parent
TINY = ROOT / "tests/specs/tiny_digits.json"
ARGS = ["train", str(TINY), "--data", "digits", "--steps", "8", "--batch-size", "16", "--eval-every", "8", "--log-every", "4", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = subprocess.run([sys.executable, "-m", "arblocks", *ARGS, "--out", str(tmp_path / "one")], cwd=ROOT, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "-m", "arblocks"]
    double = subprocess.run([*torchrun, *ARGS, "--out", str(tmp_path / "two")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = load(tmp_path / "one/checkpoint.pt"), load(tmp_path / "two/checkpoint.pt")
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in one["model"]:
        assert torch.allclose(one["model"][key], two["model"][key], atol=1e-5), key
    rows = lambda run: [line.split(",") for line in (tmp_path / run / "metrics.csv").read_text().splitlines()[1:]]  # noqa: E731
    test_one = [float(r[2]) for r in rows("one") if r[1] == "test"]
    test_two = [float(r[2]) for r in rows("two") if r[1] == "test"]
    assert len(test_one) == len(test_two) == 1 and abs(test_one[0] - test_two[0]) < 1e-4  # 297 test images split 149 + 148
    train_one = [float(r[2]) for r in rows("one") if r[1] == "train"]
    train_two = [float(r[2]) for r in rows("two") if r[1] == "train"]
    assert all(abs(a - b) < 1e-4 for a, b in zip(train_one, train_two)) and len(train_one) == len(train_two) == 2
