"""Bad specs: one clear problem per mistake, with its JSON path, never a traceback."""

import json
import subprocess
import sys

import pytest

from arblocks import SpecError, get_registry, load_spec, parse_spec
from arblocks.cli import main
from tests.helpers import build, problems_of, spec_dict

GOOD_FIRST = {"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6}


def errors(data):
    with pytest.raises(SpecError) as e:
        spec = parse_spec(data)
        from arblocks import build_model

        build_model(spec)
    return problems_of(e)


def test_every_problem_is_listed_with_its_path():
    data = spec_dict([
        GOOD_FIRST,
        {"type": "repeat", "times": 2, "body": [{"type": "maskd_conv"}, {"type": "masked_conv", "kernl": 3, "channels": -1}]},
        {"type": "masked_conv", "kernel_size": 4},
    ], head={"type": "categorcal"})
    data["image"]["width"] = 0
    got = errors(data)
    assert got == [
        ("/image/width", "must be > 0 (got 0)"),
        ("/body/1/body/0/type", f"unknown block type 'maskd_conv'; did you mean 'masked_conv'? (`arblocks blocks` lists all {len(get_registry().blocks)})"),
        ("/body/1/body/1/channels", "must be > 0 (got -1)"),
        ("/body/1/body/1/kernl", "unknown field for 'masked_conv'; did you mean 'kernel_size'?"),
        ("/body/2/kernel_size", "must be odd (got 4)"),
        ("/head/type", "unknown head type 'categorcal'; did you mean 'categorical'? (`arblocks blocks --kind head` lists all 3)"),
    ]


@pytest.mark.parametrize(
    "body, path, fragment",
    [
        ([{**GOOD_FIRST, "mask": "B"}], "/body/0/mask", "use mask 'A'"),
        ([{"type": "conv", "kernel_size": 3}], "/body/0/kernel_size", "unmasked 3x3"),
        ([GOOD_FIRST, {"type": "relu", "in": "features"}], "/body/1/in", "stream 'features' is read before it is written"),
        ([GOOD_FIRST, {"type": "relu", "in": "hh"}], "/body/1/in", "did you mean 'h'?"),
        ([GOOD_FIRST, {"type": "relu", "in": {"pop": "skips"}}], "/body/1/in", "skip stack 'skips', which is empty"),
        ([{**GOOD_FIRST, "push": "skips"}, {"type": "relu"}], "/body/0/push", "still holds 1 entry"),
        ([GOOD_FIRST, {"type": "relu", "out": "x"}], "/body/1/out", "'x' is the image and cannot be written"),
        ([GOOD_FIRST, {"type": "add", "in": ["h", "x"]}], "/body/1/in", "add needs streams of one shape"),
        ([GOOD_FIRST, {"type": "residual", "body": [{"type": "masked_conv", "channels": 3}]}], "/body/1/body", "must keep the shape"),
        ([GOOD_FIRST, {"type": "residual", "body": [{"type": "relu", "out": "g"}]}], "/body/1/body/0", "remove in/out/push"),
    ],
)
def test_semantic_problems(body, path, fragment):
    got = errors(spec_dict(body))
    assert any(p == path and fragment in m for p, m in got), got


def test_head_must_match_the_image():
    got = errors(spec_dict([GOOD_FIRST], head={"type": "bernoulli"}, bits=8))
    assert got == [("/head/type", "bernoulli models 1-bit images, but image.bits is 8; use 'categorical'")]
    got = errors(spec_dict([GOOD_FIRST], head={"type": "categorical", "levels": 256}, bits=4))
    assert got == [("/head/levels", "levels is 256, but a 4-bit image has 16 levels per sub-pixel")]


def test_head_on_features_that_see_their_own_pixel():
    got = errors(spec_dict([GOOD_FIRST, {"type": "conv", "kernel_size": 1}]))
    assert got[0][0] == "/head/in" and "'current'" in got[0][1]


def test_spec_level_mistakes():
    assert errors({"name": "x"})[:2] == [("/image", "required field is missing"), ("/body", "required field is missing")]
    assert errors([1, 2]) == [("", "a spec must be a JSON object, got list")]
    assert errors(spec_dict([GOOD_FIRST], ordering="zigzag"))[0][1].startswith("unknown ordering type 'zigzag'")
    assert errors({**spec_dict([GOOD_FIRST]), "bodyy": []}) == [("/bodyy", "unknown field for 'spec'; did you mean 'body'?")]
    assert errors(spec_dict([GOOD_FIRST, 3])) == [("/body/1", "a block must be a JSON object with a 'type', got 3")]
    assert errors(spec_dict([{"mask": "A"}])) == [("/body/0/type", "every block needs a 'type' (a string)")]
    assert errors({**spec_dict([GOOD_FIRST]), "image": {"channels": 3, "height": 8, "width": 8, "bitz": 8}}) == [
        ("/image/bitz", "unknown field for 'spec'; did you mean 'bits'?")
    ]


def test_malformed_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "image": {"channels": 1 "height": 2}}')
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert problems_of(e) == [("", "malformed JSON at line 2, column 26: Expecting ',' delimiter")]


def test_nothing_in_a_spec_is_executed(tmp_path):
    # a type that looks like an import path is just an unknown name
    got = errors(spec_dict([{"type": "os.system", "command": "touch pwned"}]))
    assert got[0][0] == "/body/0/type"
    assert not (tmp_path / "pwned").exists()


def test_cli_exit_2_lists_problems_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec_dict([{**GOOD_FIRST, "mask": "B"}, {"type": "relu", "in": "nope"}])))
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: 2 problems") and "/body/0/mask" in err and "Traceback" not in err
    assert "/body/1/in: stream 'nope' is read before it is written" in err
    assert main(["build", str(path), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"][0]["path"] == "/body/0/mask"
    assert set(report["problems"][0]) == {"path", "type", "message"}


@pytest.mark.slow
def test_cli_missing_file_and_bad_usage(tmp_path):
    out = subprocess.run([sys.executable, "-m", "arblocks", "build", str(tmp_path / "none.json")], capture_output=True, text=True)
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "arblocks", "bild"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice" in out.stderr and "Traceback" not in out.stderr


def test_model_rejects_bad_tensors():
    model = build([GOOD_FIRST], size=4)
    import torch

    with pytest.raises(ValueError, match="integer levels"):
        model(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 255\]"):
        model(torch.full((1, 3, 4, 4), 256))
    with pytest.raises(ValueError, match=r"shape \[B, 3, 4, 4\]"):
        model(torch.zeros(1, 1, 4, 4, dtype=torch.long))


def test_size_limits_are_checked_before_anything_is_built(tmp_path, monkeypatch):
    """A billion layers from three nested repeats, nesting past the depth limit (also past what the JSON reader can
    parse): clear problems with JSON paths, at once."""
    import json
    import time

    from arblocks import parse_spec
    from arblocks.core.validate import load_spec
    from arblocks.spec.errors import SpecError

    repeat = {"type": "relu"}
    for _ in range(3):
        repeat = {"type": "repeat", "times": 1000, "body": [repeat]}
    bomb = {"name": "x", "image": {"channels": 1, "height": 4, "width": 4, "bits": 1},
            "body": [{"type": "masked_conv", "mask": "A", "channels": 4}, repeat], "head": {"type": "bernoulli"}}
    start = time.perf_counter()
    with pytest.raises(SpecError, match=r"1,000,000,001 blocks .* limit of 100,000") as caught:
        parse_spec(bomb)
    assert time.perf_counter() - start < 1.0 and caught.value.problems[0].path == "/body"
    monkeypatch.setenv("ARBLOCKS_MAX_LAYERS", str(2 * 10**9))
    small = json.loads(json.dumps(bomb).replace('"times": 1000', '"times": 2'))
    assert parse_spec(small)  # 9 blocks: well under any limit
    monkeypatch.delenv("ARBLOCKS_MAX_LAYERS")

    nested = {"type": "masked_conv", "mask": "A", "channels": 4}
    for _ in range(40):
        nested = {"type": "residual", "body": [nested]}
    with pytest.raises(SpecError, match="nests more than 64 levels") as caught:
        parse_spec({**bomb, "body": [nested]})
    assert caught.value.problems[0].path.startswith("/body/0/body/0/body/0")

    (tmp_path / "brackets.json").write_text('{"body": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(SpecError, match="nests too deep to read"):
        load_spec(tmp_path / "brackets.json")


def test_building_stops_at_the_block_that_passes_the_parameter_limit(monkeypatch):
    from arblocks import build_model
    from arblocks.spec.errors import SpecError

    monkeypatch.setenv("ARBLOCKS_MAX_PARAMETERS", "2000")
    spec = parse_spec(spec_dict([{"type": "masked_conv", "mask": "A", "channels": 8}, {"type": "masked_conv", "channels": 16},
                                 {"type": "masked_conv", "channels": 16}], channels=1))
    with pytest.raises(SpecError, match="more than the limit of 2,000") as caught:
        build_model(spec)
    assert caught.value.problems[0].path == "/body/2"  # 80 + 1,168 + 2,320 parameters: the third block passes 2,000


def test_a_stream_typo_inside_a_repeat_is_reported_once_without_cascading_into_the_skip_stacks():
    import json
    from pathlib import Path

    from arblocks.core.builder import build_model
    from arblocks.core.validate import parse_spec

    data = json.loads((Path(__file__).parent.parent / "specs/pixelcnn_pp.json").read_text())
    data["body"][5]["body"][0]["body"][1]["aux"] = "uu"  # in the up pass: the failing block's pushes must still count
    data["body"][9]["body"][1]["aux"] = ["uu", {"pop": "ul_skips"}]  # in the down pass: its pop must still pop
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(data), device="meta")
    assert [(p.path, p.message.split(" (streams")[0]) for p in error.value.problems] == [
        ("/body/5/body/0/body/1/aux", "stream 'uu' is read before it is written; did you mean 'u'?"),
        ("/body/9/body/1/aux", "stream 'uu' is read before it is written; did you mean 'u'?"),
    ]


@pytest.mark.slow
def test_an_input_that_no_block_reads_is_warned_about(tmp_path):
    import json
    import warnings
    from pathlib import Path

    from arblocks.core.builder import build_model
    from arblocks.core.validate import parse_spec
    from arblocks.spec.errors import SpecWarning

    data = json.loads((Path(__file__).parent / "specs/tiny_digits.json").read_text())
    data["inputs"] = {"digit": {"type": "class_label", "num_classes": 10}}
    with pytest.warns(SpecWarning, match="/inputs/digit: input 'digit' is declared but no block reads it"):
        build_model(parse_spec(data))
    data["body"][1]["body"][0]["body"][1] = {"type": "masked_conv", "kernel_size": 3, "channels": 16}
    data["body"].insert(1, {"type": "gate", "label": "digit"})
    data["body"][0]["channels"] = 32
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        build_model(parse_spec(data))  # read by the gate: no warning
    aug = json.loads((Path(__file__).parent / "specs/tiny_digits.json").read_text())
    aug["augmentation"] = {"transformations": [{"type": "rotation"}]}  # the choices are passed, but nothing reads them
    path = tmp_path / "aug.json"
    path.write_text(json.dumps(aug))
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "arblocks", "build", str(path), "--no-check"], capture_output=True, text=True)
    assert out.returncode == 0 and "warning: /augmentation/conditioning: input 'augmentation' is declared but no block reads it" in out.stderr


def test_an_error_about_mixed_channel_groups_names_the_block_that_mixed_them():
    from arblocks.core.builder import build_model
    from arblocks.core.validate import parse_spec

    data = {"name": "mix", "image": {"channels": 3, "height": 4, "width": 4, "bits": 8},
            "body": [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 18},
                     {"type": "conv", "kernel_size": 1}, {"type": "relu"}],  # the 1x1 conv mixes R, G and B; the relu only carries it on
            "head": {"type": "categorical"}}
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(data))
    (problem,) = error.value.problems
    assert problem.path == "/head/in" and "the sub-pixel channel groups were mixed at /body/1 (conv)" in problem.message
    data["body"].append({"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 18})
    with pytest.raises(SpecError) as error:
        build_model(parse_spec(data))
    assert [(p.path, "mixed at /body/1 (conv)" in p.message) for p in error.value.problems][0] == ("/body/3/in", True)
