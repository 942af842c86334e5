"""Sharing models: `arblocks export` writes the folder format (spec.json, model.safetensors, a model card), and
`from_pretrained`, `eval` and `sample` load it, with the same bits/dim and samples as the checkpoint; a folder whose
weights do not fit its spec, or that holds a pickle, is refused with exit 2."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import arblocks
from arblocks.cli import main
from arblocks.weights import PretrainedError, from_pretrained
from arblocks.weights import pretrained as hub

TINY = str(Path(__file__).parent / "specs" / "tiny_digits.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", TINY, "--data", "digits", "--out", str(out), "--steps", "3", "--batch-size", "4", "--eval-every", "3",
                 "--eval-limit", "16", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def folder(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    assert main(["export", str(run), "--out", str(out)]) == 0
    return out


def test_export_writes_the_folder_format_with_a_model_card(folder, run):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "model.safetensors", "spec.json"]
    assert json.loads((folder / "spec.json").read_text()) == json.loads((run / "spec.json").read_text())
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "arblocks-pretrained/1" and meta["weights"] == "ema" and meta["step"] == "3"
    assert json.loads(meta["causality_record"])["passed"] is True
    card = (folder / "README.md").read_text()
    model = arblocks.from_pretrained(folder)
    logged = json.loads(meta["run"])["test_bits_per_dim"]["bits_per_dim"]
    assert card.startswith("---\nlibrary_name: arblocks\n") and f"trainable parameters: {model.num_parameters():,}" in card
    assert f"{logged:.4f} bits/dim" in card and "the first 16 images" in card and "The run's check passed" in card


def test_from_pretrained_gives_the_checkpoints_ema_model(folder, run):
    loaded = from_pretrained(folder)
    model, _ = arblocks.load_checkpoint(run / "checkpoint.pt")
    assert not loaded.training and loaded.spec == model.spec
    mine, theirs = loaded.state_dict(), model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_eval_and_sample_give_bitwise_the_same_results_from_the_folder(folder, run, tmp_path, capsys):
    figures = {}
    for name, source in (("checkpoint", run / "checkpoint.pt"), ("folder", folder)):
        assert main(["eval", str(source), "--json", "--no-progress"]) == 0  # the run's test data, from run.json or the metadata
        out = capsys.readouterr()
        assert "proven when the run started" in out.err  # the record travels with the weights: no re-check
        figures[name] = json.loads(out.out)
        assert main(["sample", str(source), "-n", "3", "--seed", "7", "--out", str(tmp_path / f"{name}.npy"), "--no-progress"]) == 0
        capsys.readouterr()
    assert figures["folder"]["bits_per_dim"] == figures["checkpoint"]["bits_per_dim"]
    assert figures["folder"]["nats_per_image"] == figures["checkpoint"]["nats_per_image"]
    assert np.array_equal(np.load(tmp_path / "folder.npy"), np.load(tmp_path / "checkpoint.npy"))
    assert main(["eval", str(folder), "--weights", "raw"]) == 2  # the folder holds the EMA weights only
    assert "EMA weights only" in capsys.readouterr().err


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for p in folder.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def rewrite(folder: Path, change) -> None:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata=meta)


def edit_spec(folder: Path, change) -> None:
    spec = json.loads((folder / "spec.json").read_text())
    change(spec)
    (folder / "spec.json").write_text(json.dumps(spec))


class Payload:
    def __reduce__(self):
        return (print, ("this ran on loading",))


def pickle_payload(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(pickle.dumps({"weights": Payload()}))


def only_a_bin(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))


@pytest.mark.parametrize("damage, said", [
    (lambda f: rewrite(f, lambda t: t.pop(sorted(t)[0])), "missing: "),
    (lambda f: rewrite(f, lambda t: t.__setitem__("body.9.weight", torch.zeros(2))), "not in the spec's model: body.9.weight"),
    (lambda f: rewrite(f, lambda t: t.__setitem__(sorted(t)[0], torch.zeros(3, 3))), "wrong shape: "),
    (lambda f: rewrite(f, lambda t: t[sorted(k for k in t if t[k].is_floating_point())[0]].fill_(float("nan"))), "NaN or infinite"),
    (lambda f: edit_spec(f, lambda s: s["body"][0].update(kernel_size=3)), "not the spec these weights were exported with"),
    (lambda f: edit_spec(f, lambda s: s["body"][0].update(channels=8)), "not the spec these weights were exported with"),
    (lambda f: edit_spec(f, lambda s: s["body"][0].update(kernel_size="3; import os")), "/body/0/kernel_size"),
    (pickle_payload, "not a safetensors file"),
    (only_a_bin, "pytorch_model.bin, which a pickle could make run code on loading, so they are never read"),
    (lambda f: (f / "spec.json").unlink(), "no spec.json"),
])
def test_a_folder_that_does_not_fit_its_spec_is_refused_with_exit_2(folder, tmp_path, capsys, damage, said):
    broken = copy_of(folder, tmp_path)
    damage(broken)
    for argv in (["eval", str(broken), "--no-progress"], ["sample", str(broken), "-n", "1", "--out", str(tmp_path / "s.png")]):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert said in out.err and "Traceback" not in out.err and "this ran on loading" not in out.out + out.err
    with pytest.raises(arblocks.ArblocksError):
        from_pretrained(broken)


def test_export_refuses_a_folder_with_files_unless_forced(run, folder, capsys):
    assert main(["export", str(run), "--out", str(folder)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(folder), "--force"]) == 0


def test_hub_ids_download_the_folder_files_and_fail_clearly_offline(folder, monkeypatch, tmp_path):
    asked = {}

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        asked.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        return str(folder)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert from_pretrained("someone/tiny-digits@v1").num_parameters() == from_pretrained(folder).num_parameters()
    assert asked == {"repo_id": "someone/tiny-digits", "revision": "v1",
                     "allow_patterns": ["spec.json", "model.safetensors", "palette.safetensors", "README.md"]}
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(PretrainedError, match="cannot reach the Hugging Face Hub"):
        hub.from_pretrained("someone/not-cached")
    assert main(["sample", "someone/not-cached", "--out", str(tmp_path / "s.png")]) == 2
    assert main(["eval", str(tmp_path / "missing" / "checkpoint.pt")]) == 2  # a checkpoint path is not taken for a Hub id
