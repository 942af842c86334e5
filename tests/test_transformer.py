"""The transformer blocks and Image GPT as a spec."""

import json
from pathlib import Path

import pytest
import torch

from arblocks import SpecError, build_model, load_spec, parse_spec
from arblocks.causality.check import check_model
from tests.helpers import fit

SPECS = Path(__file__).parent.parent / "specs"


def test_igpt_s_matches_the_original_parameter_count():
    model = build_model(load_spec(SPECS / "igpt_s.json"))
    assert model.num_parameters() == 76_571_648
    assert sum(s.type == "transformer_block" for s in model.steps) == 24


@pytest.mark.parametrize("ordering", ["raster", {"type": "raster", "transpose": True, "reflect_cols": True}])
def test_small_igpt_is_causal_with_full_coverage_under_any_order(ordering):
    data = json.loads((SPECS / "igpt_small.json").read_text())
    data["ordering"] = ordering
    data["image"].update(height=5, width=5)
    report = check_model(build_model(parse_spec(data)))
    assert report.ok, report.summary()
    assert report.modes["eval"].method == "perturbation"  # tokens: no gradient path from the image
    assert report.min_coverage == 1.0


def test_the_first_position_sees_nothing_and_each_position_sees_the_previous_token():
    model = build_model(load_spec(SPECS / "igpt_small.json")).eval()
    x = torch.randint(0, 512, (1, 1, 8, 8))
    y = x.clone()
    y[0, 0, 2, 3] = (y[0, 0, 2, 3] + 7) % 512
    with torch.no_grad():
        a, b = model(x), model(y)
    changed = (a != b).flatten(1, 2).any(1)[0]  # [H, W]
    assert not changed[:2].any() and not changed[2, :4].any()  # up to and including (2, 3): unchanged
    assert changed[2, 4]  # the next position's input is the changed token


def test_a_transformer_on_unshifted_tokens_is_refused():
    data = json.loads((SPECS / "igpt_small.json").read_text())
    data["body"][0]["shift"] = False
    with pytest.raises(SpecError, match="feed it a shifted token_embedding"):
        build_model(parse_spec(data))


def test_small_igpt_trains():
    torch.manual_seed(0)
    model = build_model(load_spec(SPECS / "igpt_small.json"))
    x = torch.randint(0, 512, (4, 1, 1, 8)).expand(4, 1, 8, 8)
    first, last = fit(model, x, steps=20, lr=3e-3)
    assert last < 0.6 * first
