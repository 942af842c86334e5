"""Specs with stages: parsing with JSON paths, building, the likelihood, sampling, build."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from arblocks.causality.check import check_model
from arblocks.cli import main
from arblocks.spec.errors import SpecError
from arblocks.staged.stages import build_staged, parse_staged

TINY = Path(__file__).parent / "specs/tiny_aux_grayscale.json"


def tiny() -> dict:
    return json.loads(TINY.read_text())


def built(data: dict | None = None):
    return build_staged(parse_staged(data or tiny()))


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        built(data)
    return [(p.path, p.message) for p in e.value.problems]


@pytest.mark.slow
def test_each_stage_models_its_view_given_the_earlier_ones():
    model = built()
    gray, colour = model.stages
    assert (gray.image.channels, gray.image.bits) == (1, 4) and colour.image == model.image
    assert gray.provided_inputs == [] and colour.provided_inputs == ["gray"]
    assert colour.inputs["gray"].info.shape == (1, 8, 8)
    for stage in model.stages:  # each stage is an ordinary model, checked like one
        assert check_model(stage).ok


def test_the_likelihood_is_the_sum_of_the_stages_over_the_images_dimensions():
    model = built()
    x = torch.randint(0, 256, (3, 3, 8, 8))
    per_stage = model.stage_nll(x)
    gray = model.views[0](x)
    assert torch.allclose(per_stage[0], model.stages[0].nll(gray))
    assert torch.allclose(per_stage[1], model.stages[1].nll(x, gray=gray.float() * (2 / 15) - 1))
    assert torch.allclose(model.nll(x), per_stage[0] + per_stage[1])
    with torch.no_grad():
        assert model.bits_per_dim(x).item() == pytest.approx(float(model.nll(x).sum()) / (3 * 192 * math.log(2)), rel=1e-6)


def test_the_colour_stage_reads_the_grayscale_variable():
    model = built()
    x = torch.randint(0, 256, (1, 3, 8, 8))
    brighter = x.clone()
    brighter[0, :, 4, 4] = 255 - brighter[0, :, 4, 4]  # changes the grayscale pixel (4, 4) and the colour pixel
    gray_a, gray_b = model.views[0](x), model.views[0](brighter)
    assert not torch.equal(gray_a, gray_b)
    colour = model.stages[1]
    # the colour stage's parameters at pixel (0, 0) see the grayscale map there (it is fully known), never the colour pixel (4, 4)
    out_a = colour(x, gray=gray_a.float() * (2 / 15) - 1)
    out_b = colour(x, gray=gray_b.float() * (2 / 15) - 1)
    assert not torch.equal(out_a[..., 3:6, 3:6], out_b[..., 3:6, 3:6])


def test_sampling_goes_stage_by_stage():
    model = built()
    torch.manual_seed(0)
    images = model.sample(2, engine="cached", generator=torch.Generator().manual_seed(1))
    assert images.shape == (2, 3, 8, 8) and images.dtype == torch.long and 0 <= int(images.min()) and int(images.max()) <= 255
    again = model.sample(2, engine="naive", generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, again)  # both engines draw the same images from one seed, stage after stage


def test_bad_stages_are_reported_with_their_paths():
    data = tiny()
    data["image"]["channels"] = 1
    assert problems(data)[0][0] == "/stages/0/view"
    assert "3-channel" in problems(data)[0][1]

    data = tiny()
    data["stages"][0]["view"] = {"type": "downsample", "factor": 3}
    assert problems(data) == [("/stages/0/view/factor", "a factor of 3 does not divide the image's 8x8")]

    data = tiny()
    data["stages"][0]["view"] = {"type": "greyscale"}
    ((path, message),) = problems(data)
    assert path == "/stages/0/view/type" and "did you mean 'grayscale'" in message

    data = tiny()
    data["stages"].reverse()  # the grayscale stage last: it does not model the image
    assert ("/stages/1/view", "the last stage must model the image itself (view 'identity'), so that the stages model x") in problems(data)

    data = tiny()
    data["stages"][0]["body"].insert(1, {"type": "add", "in": ["h", "colour"], "out": "h"})  # a later stage's variable
    ((path, message),) = problems(data)
    assert path == "/stages/0/body/1/in"
    assert message == "stream 'colour' is the variable of a later stage: a stage reads only the variables of the stages before it"

    data = tiny()
    data["stages"][1]["name"] = "gray"
    assert ("/stages/1/name", "stage 'gray' is named twice (also /stages/0)") in problems(data)

    data = tiny()
    data["stages"][1]["body"][0]["kernl_size"] = 3
    ((path, message),) = problems(data)
    assert path == "/stages/1/body/0/kernl_size" and "kernel_size" in message


@pytest.mark.slow
def test_build_prints_every_stage_and_checks_each(capsys):
    assert main(["build", str(TINY)]) == 0
    out = capsys.readouterr().out
    assert "/stages/0 (gray)" in out and "/stages/1 (colour)" in out and out.count("PASSED") == 2
    assert "2 stages, total trainable parameters: 12,556" in out
    assert main(["build", str(TINY), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [s["stage"] for s in report["stages"]] == ["gray", "colour"]
    assert report["stages"][0]["view"] == {"type": "grayscale", "bits": 4}


def test_a_stage_that_would_see_its_own_sub_pixel_is_refused_at_its_path(tmp_path, capsys):
    data = copy.deepcopy(tiny())
    data["stages"][1]["body"][0]["mask"] = "B"  # the colour stage's first layer would see its own sub-pixel
    path = tmp_path / "leak.json"
    path.write_text(json.dumps(data))
    assert main(["build", str(path)]) == 2
    assert "/stages/1/body/0" in capsys.readouterr().err


@pytest.mark.slow
def test_check_checks_every_stage(capsys):
    assert main(["check", str(TINY), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and len(report["stages"]) == 2 and report["stages"][1]["image"] == [3, 8, 8]


def test_training_says_when_the_data_does_not_fit_a_spec_with_stages(tmp_path, capsys):
    assert main(["train", str(TINY), "--data", "digits", "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    assert "the spec's image is 3x8x8" in capsys.readouterr().err


def test_the_json_schema_takes_stages_and_rejects_a_typo_inside_one():
    import jsonschema

    from arblocks.core.schema import spec_json_schema

    schema = spec_json_schema()
    jsonschema.validate(tiny(), schema)
    for stage, where, value in ((1, "body", None), (0, "view", {"type": "grayscale", "bitz": 3})):
        data = tiny()
        if value is None:
            data["stages"][stage]["body"][0]["kernl"] = 3
        else:
            data["stages"][stage][where] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_python_loads_a_staged_spec_with_load_staged_and_load_spec_says_so():
    import arblocks

    model = arblocks.load_staged(TINY)
    assert isinstance(model, arblocks.StagedModel) and model.names == ["gray", "colour"]
    with pytest.raises(SpecError, match="load it with arblocks.load_staged"):
        arblocks.load_spec(TINY)


def test_a_misspelt_stage_field_gets_a_did_you_mean_at_its_path():
    data = tiny()
    data["stages"][0]["veiw"] = data["stages"][0].pop("view")
    assert ("/stages/0/veiw", "unknown field for 'spec'; did you mean 'view'?") in problems(data)
