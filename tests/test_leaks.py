"""The harness catches known leaks, at the right positions."""

import pytest

from arblocks import SpecError
from arblocks.causality.check import check_model
from tests.helpers import build, problems_of
from tests.leaky_blocks import LeakyPlugin


@pytest.fixture
def leaky(make_registry):
    return make_registry(("leaky", LeakyPlugin()))


def first_layer(kind="masked_conv", mask="A", kernel=3):
    return {"type": kind, "mask": mask, "kernel_size": kernel, "channels": 6}


def test_mask_b_in_first_layer_is_refused_by_the_builder():
    with pytest.raises(SpecError) as e:
        build([first_layer(mask="B")])
    assert problems_of(e)[0][0] == "/body/0/mask"


@pytest.mark.parametrize("channels", [1, 3])
def test_mask_b_in_first_layer_is_caught_by_the_harness(channels):
    model = build([first_layer(mask="B")], channels=channels, size=4, static_causality=False)
    report = check_model(model)
    assert not report.ok
    same_pixel = {(v.output, v.input) for v in report.violations if v.output[1:] == v.input[1:]}
    # every output sees its own channel of its own pixel: (c, r, col) <- (c, r, col)
    for c in range(channels):
        assert ((c, 2, 2), (c, 2, 2)) in same_pixel


def test_circular_padding_is_caught(leaky):
    model = build([first_layer("circular_masked_conv")], registry=leaky, channels=1, size=5)
    report = check_model(model, registry=leaky)
    assert not report.ok
    # the top row wraps around to the bottom row: output (row 0) sees input (row 4), a future pixel
    assert any(v.output[1] == 0 and v.input[1] == 4 for v in report.violations)
    assert all(v.input[1] > v.output[1] or (v.input[1] == v.output[1] and v.input[2] >= v.output[2]) for v in report.violations)


def test_batchnorm_in_train_mode_is_caught_and_eval_mode_is_clean(leaky):
    model = build([first_layer(), {"type": "batch_norm"}], registry=leaky, channels=1, size=4)
    report = check_model(model, registry=leaky)
    assert not report.modes["train"].ok
    assert report.modes["train"].violations, "statistics over all positions reach future pixels"
    assert not report.modes["train"].batch_independent
    assert report.modes["eval"].ok


def test_future_peek_names_the_right_positions(leaky):
    model = build([first_layer(kernel=3), {"type": "peek_below"}], registry=leaky, channels=1, size=4)
    report = check_model(model, registry=leaky, modes=("eval",))
    bad_inputs = {}
    for v in report.violations:
        bad_inputs.setdefault(v.output[1:], set()).add(v.input[1:])
    # the output at (0,1) adds the features of (1,1), whose 3x3 mask-A window holds (0,0), (0,1), (0,2) and (1,0)
    assert bad_inputs[(0, 1)] == {(0, 1), (0, 2), (1, 0)}
    assert bad_inputs[(0, 0)] == {(0, 0), (0, 1)}
    assert (3, 0) not in bad_inputs  # the last row has nothing below
