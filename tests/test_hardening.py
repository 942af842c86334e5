"""Bad input found before the work, as exit 2 with a message that names it; and the training loop's bookkeeping
when steps are skipped or a run resumes inside a logging window (issue: wrong results that exit 0)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import arblocks
from arblocks.cli import main
from arblocks.training import loop
from arblocks.training.loop import TrainConfig, TrainingError, train

ROOT = Path(__file__).parent.parent
TINY = str(ROOT / "tests/specs/tiny_digits.json")
QUICK = ["--steps", "2", "--batch-size", "16", "--eval-limit", "32", "--no-progress", "--no-check"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model saved from Python (no training needed for these checks)."""
    torch.manual_seed(0)
    model = arblocks.build_model(arblocks.load_spec(TINY))
    return str(arblocks.save_checkpoint(model, tmp_path_factory.mktemp("ckpt")))


def refused(capsys, argv, *words):
    """``argv`` exits 2 and its message holds every word."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err and "internal error" not in err
    return err


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "-4"], ["--batch-size", "at least 1, got -4"]),
    (["--batch-size", "0"], ["--batch-size", "at least 1"]),
    (["--orders", "9"], ["--orders", "between 1 and 8"]),
    (["--split", "valid"], ["digits has no 'valid' split"]),
    (["--device", "bogus"], ["unknown device 'bogus'"]),
    (["--resize", "big"], ["--resize"]),
])
def test_eval_refuses_bad_options(checkpoint, capsys, argv, words):
    refused(capsys, ["eval", checkpoint, "--data", "digits", "--no-check", "--no-progress", *argv], *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_refused_before_the_work(checkpoint, capsys):
    refused(capsys, ["eval", checkpoint, "--data", "digits", "--device", "cuda"], "no CUDA device")
    refused(capsys, ["sample", checkpoint, "--out", "x.png", "--device", "cuda:1"], "no CUDA device")


@pytest.mark.parametrize("argv, words", [
    (["--temperature", "nan"], ["--temperature", "finite number above 0"]),
    (["--temperature", "inf"], ["--temperature"]),
    (["--seed", str(2**70)], ["--seed", "between 0 and 4294967295"]),
    (["--seed", "-1"], ["--seed", "between 0"]),
    (["-n", "0"], ["-n", "at least 1"]),
    (["--rows", "3"], ["--rows goes with --complete"]),
    (["--label", "3"], ["not conditioned on a class label"]),
    (["-n", "5000"], ["at most 4096", ".npy"]),
])
def test_sample_refuses_bad_options(checkpoint, capsys, tmp_path, argv, words):
    refused(capsys, ["sample", checkpoint, "--out", str(tmp_path / "s.png"), "--no-check", "--no-progress", *argv], *words)
    assert not (tmp_path / "s.png").exists()


def test_sample_checks_out_before_drawing(checkpoint, capsys, tmp_path):
    refused(capsys, ["sample", checkpoint, "--out", str(tmp_path / "samples")], "no image extension")
    (tmp_path / "folder.png").mkdir()
    refused(capsys, ["sample", checkpoint, "--out", str(tmp_path / "folder.png")], "is a folder")
    (tmp_path / "file").write_text("")
    refused(capsys, ["sample", checkpoint, "--out", str(tmp_path / "file" / "s.png")], "not a folder")


def test_sample_in_batches_writes_npy_levels_batch_by_batch(checkpoint, capsys, tmp_path):
    from arblocks.sampling import sample_batches

    assert main(["sample", checkpoint, "-n", "5", "--batch-size", "2", "--out", str(tmp_path / "s.npy"), "--no-check", "--no-progress"]) == 0
    written = np.load(tmp_path / "s.npy")
    model, _ = arblocks.load_checkpoint(checkpoint)
    generator = torch.Generator().manual_seed(0)
    expected = torch.cat([images for _, images in sample_batches(model, 5, 2, generator=generator)])
    assert written.dtype == np.uint8 and written.shape == (5, 1, 8, 8) and np.array_equal(written, expected.numpy())
    assert "5 images as an array of levels [5, 1, 8, 8]" in capsys.readouterr().out
    assert main(["sample", checkpoint, "-n", "5", "--batch-size", "2", "--engine", "naive", "--out", str(tmp_path / "n.npy"),
                 "--no-check", "--no-progress"]) == 0
    assert np.array_equal(np.load(tmp_path / "n.npy"), written)  # one seed and batch size, one set of images, either engine


def test_the_verification_of_many_draws_runs_in_bounded_batches(monkeypatch):
    from arblocks.sampling import cached

    torch.manual_seed(0)
    model = arblocks.build_model(arblocks.load_spec(TINY)).eval()
    seen = []
    forward = type(model).forward

    def counting(self, x, **kwargs):
        seen.append(len(x))
        return forward(self, x, **kwargs)

    monkeypatch.setattr(cached, "VERIFY_BATCH", 3)
    monkeypatch.setattr(type(model), "forward", counting)
    model.sample(7, generator=torch.Generator().manual_seed(0))
    assert seen[-3:] == [3, 3, 1]


@pytest.mark.parametrize("argv, words", [
    (["--lr", "inf"], ["--lr", "finite"]),
    (["--lr", "nan"], ["--lr"]),
    (["--seed", str(2**70)], ["--seed", "4294967295"]),
    (["--seed", "-1"], ["--seed"]),
    (["--device", "bogus"], ["unknown device"]),
    (["--compile", "--compile-backend", "bogus"], ["--compile-backend 'bogus'", "inductor"]),
])
def test_train_refuses_bad_options_before_the_work(capsys, tmp_path, argv, words):
    refused(capsys, ["train", TINY, "--data", "digits", "--out", str(tmp_path / "run"), *QUICK, *argv], *words)
    assert not (tmp_path / "run").exists()


def test_train_checks_its_folders_first(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    refused(capsys, ["train", TINY, "--data", "digits", "--out", str(tmp_path / "file" / "run"), *QUICK], "is a file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tensorboard").write_text("")
    refused(capsys, ["train", TINY, "--data", "digits", "--out", str(tmp_path / "run"), "--tensorboard", *QUICK], "tensorboard", "which is a file")


def test_skipped_steps_keep_their_schedule_and_a_run_of_only_skipped_steps_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "_gradient_norm", lambda model, clip: float("nan"))
    config = TrainConfig(steps=4, batch_size=16, log_every=2, eval_every=2, checkpoint_every=2, eval_limit=32)
    with pytest.raises(TrainingError, match="every step of the run .1 to 4. was skipped"):
        train(arblocks.load_spec(TINY), "digits", tmp_path / "run", config, progress=False)
    rows = list(csv.DictReader((tmp_path / "run/metrics.csv").open()))
    assert [(r["step"], r["split"]) for r in rows] == [("2", "train"), ("2", "test"), ("4", "train"), ("4", "test")]
    assert rows[-1]["skipped_steps"] == "4" and rows[0]["bits_per_dim"] == "nan"
    assert (tmp_path / "run/checkpoint.pt").is_file()


def test_metrics_after_a_resume_inside_a_logging_window_equal_the_uninterrupted_run(tmp_path, monkeypatch):
    spec = arblocks.load_spec(TINY)
    config = TrainConfig(steps=10, batch_size=16, log_every=5, eval_every=100, checkpoint_every=3, eval_limit=32)
    train(spec, "digits", tmp_path / "straight", config, progress=False)
    batches = loop._batch_indices

    def killed_at_step_4(config, n, step, world):  # the process dies in step 4, after the checkpoint of step 3
        if step == 3:
            raise KeyboardInterrupt
        return batches(config, n, step, world)

    monkeypatch.setattr(loop, "_batch_indices", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(spec, "digits", tmp_path / "split", config, progress=False)
    monkeypatch.setattr(loop, "_batch_indices", batches)
    train(spec, "digits", tmp_path / "split", config, resume=True, progress=False)  # resumed inside the window of steps 1..5

    def figures(run):
        return [(r["step"], r["split"], r["bits_per_dim"]) for r in csv.DictReader((tmp_path / run / "metrics.csv").open())]

    assert figures("split") == figures("straight")


def test_corrupt_and_bomb_files_are_clear_errors(tmp_path, capsys, checkpoint, monkeypatch):
    from PIL import Image

    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    refused(capsys, ["eval", checkpoint, "--data", f"npz:{tmp_path / 'bad.npz'}", "--no-check"], "bad.npz", "cannot read")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 100x100 PNG is then a bomb of 10,000 pixels
    Image.new("L", (100, 100)).save(tmp_path / "bomb.png")
    refused(capsys, ["sample", checkpoint, "--out", str(tmp_path / "s.png"), "--complete", str(tmp_path / "bomb.png"), "--rows", "2", "--no-check"],
            "--complete", "decompression bomb")
    (tmp_path / "pngs").mkdir()
    Image.new("L", (100, 100)).save(tmp_path / "pngs" / "a.png")
    refused(capsys, ["eval", checkpoint, "--data", f"folder:{tmp_path / 'pngs'}", "--no-check"], "a.png", "DecompressionBomb")


def spec_file(tmp_path, text: str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(text)
    return str(path)


def test_a_number_written_as_a_string_is_refused_at_its_path(tmp_path, capsys):
    text = Path(TINY).read_text().replace('"kernel_size": 5', '"kernel_size": "5"').replace('"height": 8', '"height": "8"')
    refused(capsys, ["build", spec_file(tmp_path, text), "--no-check"], "/body/0/kernel_size: must be a number, not the string \"5\"",
            "/image/height: must be a number")


def test_a_key_given_twice_in_a_spec_is_refused_at_its_path(tmp_path, capsys):
    text = Path(TINY).read_text().replace('"channels": 16, "out": "h"', '"channels": 16, "channels": 32, "out": "h"')
    refused(capsys, ["build", spec_file(tmp_path, text), "--no-check"], "/body/0/channels", "appears twice")


def test_the_same_transformation_twice_in_an_augmentation_is_refused(capsys):
    refused(capsys, ["build", str(ROOT / "specs/distaug_pixelcnn_pp_small.json"), "--no-check",
                     "--set", 'augmentation.transformations=[{"type": "rotation"}, {"type": "transpose"}, {"type": "rotation"}]'],
            "/augmentation/transformations/2", "the same transformation as /augmentation/transformations/0")


def test_running_out_of_memory_is_exit_2_with_what_to_lower(monkeypatch, capsys):
    import arblocks.cli as cli

    def allocate(args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 50331648000 bytes.")

    monkeypatch.setattr(cli, "cmd_check", allocate)
    refused(capsys, ["check", TINY], "arblocks check: out of memory", "50331648000 bytes", "--size N")


def test_a_distaug_model_samples_and_scores_the_identity_from_python_without_its_choices():
    spec = arblocks.load_spec(ROOT / "specs/distaug_pixelcnn_pp_small.json")
    spec = spec.model_copy(update={"image": spec.image.model_copy(update={"height": 4, "width": 4})})
    torch.manual_seed(0)
    model = arblocks.build_model(spec).eval()
    x = torch.randint(0, 256, (2, 3, 4, 4))
    identity = torch.zeros(2, 2, dtype=torch.long)
    assert torch.equal(model.nll(x), model.nll(x, augmentation=identity))
    drawn = model.sample(2, generator=torch.Generator().manual_seed(0))
    told = model.sample(2, conditioning={"augmentation": identity}, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, told)


def test_the_stages_figures_by_name():
    from arblocks.staged import load_staged

    model = load_staged(ROOT / "tests/specs/tiny_aux_grayscale.json").eval()
    x = torch.randint(0, model.image.levels, (2, model.image.channels, model.image.height, model.image.width))
    by_name = model.nll_by_stage(x)
    assert list(by_name) == model.names and all(torch.equal(a, b) for a, b in zip(by_name.values(), model.stage_nll(x)))


def test_a_check_that_runs_out_of_memory_names_the_image(monkeypatch, capsys):
    from arblocks.causality import check

    def allocate(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 50331648000 bytes.")

    monkeypatch.setattr(check, "check_spec", allocate)
    refused(capsys, ["check", TINY, "--set", "image.height=4096", "--set", "image.width=4096"], "1x4096x4096 image needs more memory", "--size N")


def test_heads_that_do_not_divide_the_width_are_reported_at_heads(capsys):
    refused(capsys, ["build", str(ROOT / "specs/image_transformer_small.json"), "--no-check", "--set", "defaults.transformer_block.heads=5"],
            "/heads: the block's 64 channels do not split into 5 heads")


def test_schema_and_wiring_problems_arrive_in_one_round(tmp_path, capsys):
    text = """{
      "name": "t", "image": {"channels": 1, "height": 8, "width": 8, "bits": 4},
      "body": [
        {"type": "masked_conv", "mask": "A", "kernel_size": 5, "channels": 16, "out": "h", "kernl": 3},
        {"type": "relu", "in": "g"},
        {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8, "in": "x", "out": "z"}
      ],
      "head": {"type": "categorical", "in": "h"}
    }"""
    err = refused(capsys, ["build", spec_file(tmp_path, text), "--no-check"], "3 problems", "/body/0/kernl: unknown field",
                  "/body/1/in: stream 'g' is read before it is written", "/body/2/mask: mask B")
    assert "/body/0/" not in err.split("kernl")[1]  # the invalid block itself is not reported again by the builder


def test_a_skipped_invalid_block_replays_its_skip_stack_so_later_pops_are_not_misreported(tmp_path, capsys):
    text = """{
      "name": "t", "image": {"channels": 1, "height": 8, "width": 8, "bits": 4},
      "body": [
        {"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 8, "out": "h", "push": "skips", "bogus": 1},
        {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8, "in": "h", "out": "h"},
        {"type": "add", "in": ["h", {"pop": "skips"}], "out": "h"}
      ],
      "head": {"type": "categorical", "in": "h"}
    }"""
    err = refused(capsys, ["build", spec_file(tmp_path, text), "--no-check"], "1 problem", "/body/0/bogus")
    assert "stack" not in err


def test_strict_verification_draws_in_float64_where_both_engines_agree_bit_for_bit(checkpoint, tmp_path):
    for engine in ("cached", "naive"):
        assert main(["sample", checkpoint, "-n", "3", "--verify", "strict", "--engine", engine, "--out", str(tmp_path / f"{engine}.npy"),
                     "--no-check", "--no-progress"]) == 0
    assert np.array_equal(np.load(tmp_path / "cached.npy"), np.load(tmp_path / "naive.npy"))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_the_end_of_call_verification_has_the_stated_tolerance_per_dtype(dtype, tolerance, monkeypatch):
    from arblocks.sampling import cached
    from arblocks.sampling.draws import SamplingError

    assert cached.TOLERANCE[dtype] == tolerance  # the figure docs/training.md states
    record = cached.Record.__new__(cached.Record)
    record.params = torch.zeros(1, dtype=dtype)
    for difference, raises in ((0.9 * tolerance, False), (1.1 * tolerance, True)):
        monkeypatch.setattr(cached.Record, "difference", lambda self, conditioning, d=difference: (d, 0.5))
        if raises:
            with pytest.raises(SamplingError, match="disagrees"):
                record.verify({})
        else:
            record.verify({})
