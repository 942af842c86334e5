"""The `arblocks` command as a user runs it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from arblocks.cli import main
from arblocks.core.schema import spec_json_schema
from tests.helpers import run_with_leaky_plugin_installed

ROOT = Path(__file__).parent.parent
SPECS = sorted((ROOT / "specs").glob("*.json"))
#: shipped specs whose `arblocks build` runs, check included, in a test of its own below (each asserts the check passed)
BUILT_BY_THE_CLI_TESTS = {"pixelsnail.json", "pixelcnn.json", "pixelcnn_binarized_mnist.json"}


def run(*args):
    """The CLI in this process, from the repository's root (the headline command below also runs as a fresh process)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run_process(*args):
    return subprocess.run([sys.executable, "-m", "arblocks", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.slow
def test_build_pixelcnn_prints_blocks_total_and_a_passing_check():
    out = run("build", "specs/pixelcnn.json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("specs/pixelcnn.json: pixelcnn-cifar10 (image 3x32x32, 8 bits")
    assert lines[1].split() == ["name", "type", "output", "params", "state"]
    assert lines[2].split() == ["/body/0", "masked_conv", "256x32x32", "37,888", "strict"]
    assert "total trainable parameters: 3,503,616" in out.stdout
    assert "PASSED" in out.stdout and "blind spot" in out.stdout


@pytest.mark.slow
def test_build_json_matches_the_table(capsys):
    assert main(["build", "specs/pixelcnn_binarized_mnist.json", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["total_parameters"] == sum(b["parameters"] for b in report["blocks"] if b["depth"] == 0)
    assert report["causality"]["modes"]["train"]["ok"] and report["causality"]["modes"]["eval"]["ok"]
    assert 0 < report["causality"]["coverage"]["min"] < 1


@pytest.mark.slow
def test_build_exits_1_when_an_installed_plugin_block_leaks(tmp_path):
    out = run_with_leaky_plugin_installed(tmp_path, 6, "build")
    assert out.returncode == 1, out.stderr
    assert "FAILED" in out.stdout and "output (row 0, col 1, channel 0) <- input (row 1, col 0, channel 0)" in out.stdout


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_shipped_specs_validate_against_the_exported_schema(spec):
    jsonschema.validate(json.loads(spec.read_text()), spec_json_schema())


def test_schema_rejects_what_the_validator_rejects():
    schema = spec_json_schema()
    bad = json.loads((ROOT / "specs/pixelcnn.json").read_text())
    bad["body"][0]["kernl"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_schema_and_blocks_commands():
    out = run("schema")
    assert out.returncode == 0 and json.loads(out.stdout)["title"] == "arblocks model spec"
    out = run("blocks", "masked*")
    assert out.returncode == 0
    assert out.stdout.split(None, 3)[:3] == ["masked_conv", "block", "arblocks"]
    out = run("blocks", "--kind", "head")
    assert {line.split()[0] for line in out.stdout.splitlines()} == {"bernoulli", "categorical", "logistic_mixture"}
    assert run("blocks", "nothing_like_this").returncode == 1


@pytest.mark.slow
def test_console_script_is_installed():
    import shutil

    exe = shutil.which("arblocks")
    assert exe, "pip install -e . puts `arblocks` on PATH"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("arblocks ")


@pytest.mark.slow
@pytest.mark.parametrize("spec", [s for s in SPECS if s.name not in BUILT_BY_THE_CLI_TESTS], ids=lambda p: p.name)
def test_every_shipped_spec_passes_the_check_that_build_runs(spec):
    from arblocks import build_model
    from arblocks.causality.check import check_spec
    from arblocks.spec.reading import read_spec_file
    from arblocks.staged.stages import parse_any

    parsed = parse_any(read_spec_file(spec))
    for loaded in getattr(parsed, "stage_specs", [parsed]):  # a spec with stages: each stage
        report = check_spec(loaded, full=build_model(loaded, device="meta"))
        assert report.ok, report.summary()


def test_the_shipped_specs_left_to_the_cli_tests_are_shipped():
    assert BUILT_BY_THE_CLI_TESTS <= {s.name for s in SPECS}


@pytest.mark.slow
def test_the_command_the_project_is_known_by():
    out = run_process("build", "specs/pixelsnail.json")
    assert out.returncode == 0, out.stderr
    assert "total trainable parameters: 46,180,788" in out.stdout
    assert "PASSED" in out.stdout and "coverage of the allowed past: min 1.000" in out.stdout


def test_every_option_of_every_verb_is_described():
    from arblocks.cli import parser

    verbs = next(a for a in parser()._actions if a.dest == "command").choices
    missing = [f"{verb} {a.option_strings or a.dest}" for verb, sub in verbs.items() for a in sub._actions
               if a.dest != "help" and not (a.help or "").strip()]
    assert not missing, missing


def test_set_overrides_are_validated_like_the_spec_and_saved_with_the_run(tmp_path, capsys):
    import json

    tiny = ROOT / "tests/specs/tiny_digits.json"
    run = tmp_path / "run"
    assert main(["train", str(tiny), "--data", "digits", "--out", str(run), "--steps", "2", "--no-progress",
                 "--set", "body.1.times=1", "--set", "defaults.masked_conv.bias=false", "--set", "name=tiny-set"]) == 0
    saved = json.loads((run / "spec.json").read_text())
    assert saved["name"] == "tiny-set" and saved["body"][1]["times"] == 1
    assert all(b.get("bias", True) is False for b in saved["body"] if b["type"] == "masked_conv")
    capsys.readouterr()
    assert main(["build", str(tiny), "--no-check", "--set", "image.height=-1"]) == 2
    assert "/image/height" in capsys.readouterr().err
    assert main(["build", str(tiny), "--no-check", "--set", "body.9.channels=3"]) == 2
    assert "/body/9/channels: '9' is not an index of the list at /body (3 items)" in capsys.readouterr().err
    assert main(["check", str(tiny), "--set", "height16"]) == 2
    assert "--set expects PATH=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_averages_over_orders_for_order_agnostic_specs_only(tmp_path, capsys):
    import json

    run = tmp_path / "lm"
    assert main(["train", str(ROOT / "specs/lmconv_small.json"), "--data", "digits", "--out", str(run), "--steps", "2", "--batch-size", "8",
                 "--no-progress", "--set", "image.height=8", "--set", "image.width=8"]) == 0
    capsys.readouterr()
    # train has run the guard on this spec; the evaluations skip it (2.4 s each), averaging is what is tested here
    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits", "--orders", "3", "--json", "--no-check"]) == 0
    report = json.loads(capsys.readouterr().out)
    per_order, mixed = report["bits_per_dim_per_order"], report["bits_per_dim"]
    assert report["orders"] == 3 and len(per_order) == 3
    assert min(per_order) - math.log2(3) / report["images"] / 64 - 1e-9 <= mixed <= sum(per_order) / 3 + 1e-9  # a mixture's bounds
    assert main(["eval", str(run / "checkpoint.pt"), "--data", "digits", "--json", "--no-check"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_dim"] == pytest.approx(per_order[0], rel=1e-9)  # the spec's own order

    tiny = tmp_path / "tiny"
    assert main(["train", str(ROOT / "tests/specs/tiny_digits.json"), "--data", "digits", "--out", str(tiny), "--steps", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tiny / "checkpoint.pt"), "--data", "digits", "--orders", "2"]) == 2
    assert "averaging over orders needs blocks that work under every order" in capsys.readouterr().err


def test_the_schema_chooses_a_config_by_its_type_so_a_validator_names_the_wrong_field():
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(spec_json_schema())
    data = json.loads((ROOT / "specs/pixelcnn.json").read_text())
    data["body"][0]["kernl"] = 3
    error = best_match(validator.iter_errors(data))
    assert "'kernl' was unexpected" in error.message and list(error.absolute_path) == ["body", 0]
    data["body"][0] = {"type": "masked_cnv"}
    error = best_match(validator.iter_errors(data))
    assert "'masked_cnv' is not one of" in error.message and list(error.absolute_path) == ["body", 0, "type"]
    assert spec_json_schema()["$defs"]["Block"]["discriminator"]["mapping"]["masked_conv"] == "#/$defs/block.masked_conv"
