"""Leaks that gradients cannot see, and stateful blocks: each one is caught by `check`, `build` and the kit.

The corpus (tests/leaky_blocks.py) holds masked convolutions that claim to be causal and are not: a future pixel
enters through ``.detach()``, ``round``, a comparison, ``argmax``, a threshold active only at the top level, a branch
on a level, an image-wide maximum, the previous image of the batch, state kept between calls (in a buffer or a plain
attribute), in training mode only, or mask B where mask A is claimed.
"""

import json

import pytest

from arblocks import parse_spec
from arblocks.causality.check import check_model, check_spec
from arblocks.core.plugins import load_registry
from arblocks.testing import check_block
from tests.helpers import build, run_cli_with_leaky_plugin
from tests.leaky_blocks import CORPUS, FIRST_LAYER, WIDE, LeakyPlugin

NAMES = [cls.Config.model_fields["type"].default for cls in CORPUS]
#: caught by the state checks rather than by a dependency
STATEFUL = {"python_state_leak", "buffer_state_leak"}
#: whose dependency has a non-zero gradient somewhere (the others are invisible to gradients)
GRADIENT_VISIBLE = {"mask_b_first", "threshold_leak", *WIDE}


@pytest.fixture(scope="module")
def leaky():
    return load_registry(entry_points=False, extra_plugins=[("leaky", LeakyPlugin())])


def corpus_body(name: str) -> list[dict]:
    block = {"type": name, "kernel_size": 3, "channels": 6}
    after = {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 6}
    if name in FIRST_LAYER:
        return [block, after]
    return [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 6}, block, after]


def corpus_spec(name: str, size: int = 6) -> dict:
    height, width = (4, 20) if name in WIDE else (size, size)  # the wide taps need more than 16 columns
    return {"name": name, "image": {"channels": 3, "height": height, "width": width, "bits": 8}, "body": corpus_body(name), "head": {"type": "categorical"}}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_check_catches_each_leak(name, leaky):
    report = check_spec(parse_spec(corpus_spec(name), registry=leaky), size=None, registry=leaky, thorough=True, static_causality=False)
    assert not report.ok, report.summary()
    if name in STATEFUL:
        kinds = {p.kind for mode in report.modes.values() for p in mode.problems}
        assert kinds & {"buffers", "repeat"}, report.summary()
        return
    assert report.violations, report.summary()
    # every reported violation is real: the output sits before the input in the raster order (or at the same pixel)
    for v in report.violations:
        (_, orow, ocol), (_, irow, icol) = v.output, v.input
        assert (irow, icol) >= (orow, ocol) or name in ("global_max_leak", "cross_sample_leak"), v
    if name not in GRADIENT_VISIBLE:
        # the walk in float64, and again in float32 (which finds them too)
        assert all(v.found_by.startswith("perturbation") for v in report.violations), "gradients cannot see this leak"
        assert any(v.found_by == "perturbation" for v in report.violations), "the float64 walk finds it"


@pytest.mark.parametrize("name", sorted(set(NAMES) - STATEFUL - GRADIENT_VISIBLE))
def test_gradients_alone_miss_these_leaks(name, leaky):
    """The reason for the perturbation walk: without it (values=()), the float64 gradient check passes these models."""
    model = build(corpus_body(name), registry=leaky, channels=3, size=6, static_causality=False)
    assert check_model(model, registry=leaky, values=()).violations == []
    assert not check_model(model, registry=leaky).ok


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_kit_catches_each_leak(name, leaky):
    report = check_block(name, leaky, checks=("causality",))
    assert not report.ok
    failed = {f.case for f in report.failures()}
    if name == "mask_b_first":  # harmless after a mask-A layer; only the first-layer use shows it
        assert failed and all(case.endswith("as the first layer, on the image") for case in failed), failed


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_build_and_check_commands_fail_each_leak(name, leaky_installed, tmp_path, capsys):
    from arblocks.cli import main

    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(corpus_spec(name, size=8)))
    assert main(["build", str(path)]) == 1, capsys.readouterr().out
    assert "FAILED" in capsys.readouterr().out
    assert main(["check", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.slow
def test_a_zero_gradient_leak_from_an_installed_plugin_fails_build(tmp_path):
    """Through the real entry point, as a user's package is installed."""
    path = tmp_path / "detach.json"
    path.write_text(json.dumps(corpus_spec("detach_leak")))
    result = run_cli_with_leaky_plugin(tmp_path, "build", str(path))
    assert result.returncode == 1, result.stderr
    assert "[perturbation]" in result.stdout
