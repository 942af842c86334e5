"""Each verb parses its spec once and builds its model once for the run; the causality guard reuses that model and
builds only its small copy (two builds in all, none on the meta device)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

import arblocks.core.builder as builder
import arblocks.core.validate as validate
import arblocks.staged.stages as stages
from arblocks.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs/pixelsnail_small.json"  # 28x28: the guard checks it at a smaller size
TINY = str(ROOT / "tests/specs/tiny_digits.json")
DATA = "digits"  # 8x8 images, for TINY


@pytest.fixture
def counted(monkeypatch):
    """Counts of spec parses and of model builds by size (``"28x28"``, ``"8x8 meta"``)."""
    counts: collections.Counter = collections.Counter()
    build, parse = builder.Builder.build, validate.parse_spec

    def counting_build(self):
        meta = torch.empty(0).device.type == "meta"
        counts[f"{self.image.height}x{self.image.width}" + (" meta" if meta else "")] += 1
        return build(self)

    def counting_parse(*args, **kwargs):
        counts["parse"] += 1
        return parse(*args, **kwargs)

    monkeypatch.setattr(builder.Builder, "build", counting_build)
    monkeypatch.setattr(validate, "parse_spec", counting_parse)
    monkeypatch.setattr(stages, "parse_spec", counting_parse)
    return counts


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", TINY, "--data", DATA, "--out", str(out), "--steps", "2", "--batch-size", "4",
                 "--eval-limit", "8", "--no-progress"]) == 0
    return out / "checkpoint.pt"


def test_train_builds_the_model_once_and_the_guards_small_copy(counted, tmp_path):
    assert main(["train", TINY, "--data", DATA, "--out", str(tmp_path / "run"), "--steps", "3", "--eval-every", "1",
                 "--batch-size", "4", "--eval-limit", "8", "--no-progress"]) == 0
    # three evaluations of the EMA weights, one guard: still one build at the run's size and one for the check
    assert counted == {"parse": 1, "8x8": 2}


@pytest.mark.parametrize("verb", [["eval", "--no-progress"], ["sample", "-n", "1", "--no-progress"]])
def test_eval_and_sample_build_the_checkpoints_model_once(checkpoint, counted, tmp_path, verb):
    args = [verb[0], str(checkpoint), *verb[1:]] + (["--out", str(tmp_path / "s.png")] if verb[0] == "sample" else [])
    assert main(args + ["--recheck"]) == 0
    assert counted == {"parse": 1, "8x8": 2}  # the model, and the check's small copy
    counted.clear()
    assert main(args) == 0
    assert counted == {"parse": 1, "8x8": 1}  # the run's recorded check is trusted: no check, no copy
    counted.clear()
    assert main(args + ["--no-check"]) == 0
    assert counted == {"parse": 1, "8x8": 1}


def test_the_guard_at_a_smaller_size_builds_only_the_small_copy(counted):
    from arblocks import build_model, load_spec
    from arblocks.causality import require_causal

    spec = load_spec(SPEC)
    model = build_model(spec)
    counted.clear()
    require_causal(spec, "training", full=model)
    assert counted == {"8x8": 1}  # no meta build of the full size: the model given is read instead


@pytest.mark.slow
def test_the_full_size_proof_of_plugin_blocks_copies_the_given_model_instead_of_building_it(counted):
    """lmconv's blocks come from a plugin, so the guard proves them block by block at full size: on a float64 copy of
    the model it was given."""
    from arblocks import build_model, load_spec
    from arblocks.causality import check_spec

    spec = load_spec(ROOT / "specs/lmconv_small.json")
    model = build_model(spec)
    counted.clear()
    report = check_spec(spec, full=model)
    assert report.ok and report.full_size.proofs is not None and report.full_size.proofs.proven, report.full_size.reason
    assert counted == {"8x8": 1}
