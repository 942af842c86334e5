"""A guard that remembers: a run's passed check is recorded in its checkpoint, and eval, sample and train --resume
skip the check when the record matches the spec and the code; any difference runs it again."""

import pytest
import torch

import arblocks
from arblocks.causality import record as records
from arblocks.cli import main
from arblocks.training.checkpoint import load, save_atomic

TINY = "tests/specs/tiny_digits.json"
QUICK = ["--steps", "2", "--batch-size", "16", "--eval-limit", "32", "--no-progress"]


@pytest.fixture
def run(tmp_path):
    assert main(["train", TINY, "--data", "digits", "--out", str(tmp_path / "run"), *QUICK]) == 0
    return tmp_path / "run"


@pytest.fixture
def checks(monkeypatch):
    """Counts the checks run (each command's require_causal)."""
    from arblocks.causality import check

    calls = []
    original = check.require_causal

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(check, "require_causal", counting)
    from arblocks.training import loop

    monkeypatch.setattr(loop, "require_causal", counting)
    return calls


def test_the_record_lives_in_the_checkpoint_with_what_it_proved(run):
    record = load(run / "checkpoint.pt")["causality_record"]
    spec = arblocks.load_spec(TINY)
    assert record["passed"] and record["spec_hash"] == load(run / "checkpoint.pt")["spec_hash"]
    assert record["precisions"] == ["float32", "float64"] and record["check_version"] == records.CHECK_VERSION
    assert records.covers(record, records.fingerprint(spec, ("float32",)))
    assert not records.covers(record, records.fingerprint(spec, ("float32", "bf16")))  # bf16 was not proven


def test_eval_sample_and_resume_skip_a_matching_record_and_say_so(run, checks, capsys, tmp_path):
    ck = str(run / "checkpoint.pt")
    assert main(["eval", ck, "--no-progress"]) == 0
    assert main(["sample", ck, "-n", "2", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    assert main(["train", TINY, "--data", "digits", "--out", str(run), "--resume", *QUICK[:-1], "--steps", "3", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert checks == [] and err.count("causality: proven when the run started") == 3
    assert main(["eval", ck, "--recheck", "--no-progress"]) == 0 and checks == ["evaluation"]
    assert main(["eval", ck, "--precision", "bf16", "--no-progress"]) == 0 and checks[-1] == "evaluation"  # bf16 not in the record


def test_a_changed_plugin_version_or_spec_runs_the_check_again(run, checks, monkeypatch, tmp_path):
    ck = run / "checkpoint.pt"
    real = records.fingerprint
    monkeypatch.setattr(records, "fingerprint", lambda *a, **k: {**real(*a, **k), "plugins": {"arblocks-example": "0.2.0"}})
    assert main(["eval", str(ck), "--no-progress"]) == 0 and checks == ["evaluation"]
    monkeypatch.setattr(records, "fingerprint", real)
    state = load(ck)
    state["causality_record"] = {**state["causality_record"], "spec_hash": "0" * 64}  # a record of another spec
    save_atomic(state, tmp_path / "other.pt")
    assert main(["eval", str(tmp_path / "other.pt"), "--data", "digits", "--no-progress"]) == 0 and checks == ["evaluation", "evaluation"]


def test_a_checkpoint_saved_from_python_has_no_record_and_is_checked(tmp_path, checks):
    torch.manual_seed(0)
    path = arblocks.save_checkpoint(arblocks.build_model(arblocks.load_spec(TINY)), tmp_path / "py")
    assert "causality_record" not in load(path)
    assert main(["eval", str(path), "--data", "digits", "--no-progress"]) == 0 and checks == ["evaluation"]
