"""The causality proof at the precisions users run: a leak that only a float32 or bf16 path has is caught by the
check, `build`, `train` and the kit; on the CPU the comparison is bit for bit, and on a non-deterministic device a
measured noise floor sets a tolerance that still catches a leaked future value."""

import random
from typing import Literal

import pytest
import torch
import torch.nn.functional as F

import arblocks
from arblocks import BlockConfig, Elementwise, hookimpl
from arblocks.blocks.masked_conv import MaskedConv, MaskedConvConfig
from arblocks.causality import check_spec
from arblocks.causality.check import check_model
from arblocks.cli import main
from arblocks.core import plugins
from arblocks.core.plugins import load_registry
from arblocks.testing import check_block
from tests.leaky_blocks import PrecisionLeaksPlugin


class _NoisyConfig(BlockConfig):
    """Causal, but its float32 path adds noise from outside torch's generators (as a non-deterministic kernel would)."""

    type: Literal["noisy"] = "noisy"
    leak: float = 0.0


class _Noisy(Elementwise):
    Config = _NoisyConfig

    def forward(self, x):
        if x.dtype == torch.float64:
            return x
        noise = torch.tensor([random.uniform(-1e-6, 1e-6) for _ in range(x.shape[1])], dtype=x.dtype)[None, :, None, None]
        return x + noise + self.config.leak * F.pad(x[:, :, 1:], (0, 0, 0, 1))


class _RightConfig(MaskedConvConfig):
    """Within its stated reach, but its float32 path reads the pixel to the right (later in raster order)."""

    type: Literal["float32_right"] = "float32_right"


class _Right(MaskedConv):
    Config = _RightConfig

    def forward(self, x):
        out = super().forward(x)
        if x.dtype == torch.float64:
            return out
        return out + 1e-3 * F.pad(x[..., 1:], (0, 1)).mean(1, keepdim=True)


class _NoisyPlugin:
    @hookimpl
    def arblocks_register_blocks(self, register):
        register(_Noisy)
        register(_Right)


@pytest.fixture
def registry():
    return load_registry(entry_points=False, extra_plugins=[("precision-leaks", PrecisionLeaksPlugin()), ("noisy", _NoisyPlugin())])


@pytest.fixture
def installed(registry, monkeypatch):
    plugins.get_registry.cache_clear()
    monkeypatch.setattr(plugins, "load_registry", lambda *a, **k: registry)
    yield
    plugins.get_registry.cache_clear()


def spec_with(block: dict, registry) -> arblocks.ModelSpec:
    return arblocks.parse_spec({
        "name": "precision", "image": {"channels": 1, "height": 5, "width": 5, "bits": 4},
        "body": [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 8, "out": "h"}, block,
                 {"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8}],
        "head": {"type": "categorical"},
    }, registry=registry)


def test_a_float32_only_leak_is_caught_by_the_float32_walk(registry):
    spec = spec_with({"type": "float32_peek"}, registry)
    proven = check_spec(spec, registry=registry)
    assert not proven.ok
    assert {v.found_by for v in proven.violations} == {"perturbation in float32"}
    assert all(v.input[1:] >= v.output[1:] for v in proven.violations)  # each sees its own pixel or a later one
    blind = check_spec(spec, registry=registry, precisions=())  # the float64 proof alone passes it: the hole this closes
    assert blind.ok


def test_a_bf16_only_leak_is_caught_when_bf16_is_asked_for_and_by_the_kit(registry):
    spec = spec_with({"type": "bf16_peek"}, registry)
    assert check_spec(spec, registry=registry).ok  # float64 and float32 paths are clean
    caught = check_spec(spec, registry=registry, precisions=("float32", "bf16"))
    assert not caught.ok and {v.found_by for v in caught.violations} == {"perturbation in bf16"}
    kit = check_block("bf16_peek", registry, checks=("causality",))
    assert not kit.ok and "causality" in {f.check for f in kit.failures()}


def test_build_and_train_refuse_the_precision_leaks(installed, registry, tmp_path, capsys):
    import json

    for block, argv in (("float32_peek", []), ("bf16_peek", ["--precision", "bf16"])):
        path = tmp_path / f"{block}.json"
        path.write_text(json.dumps(spec_with({"type": block}, registry).model_dump(mode="json", by_alias=True, exclude_none=True)))
        assert main(["build", str(path), *argv]) == 1
        assert f"perturbation in {'float32' if block == 'float32_peek' else 'bf16'}" in capsys.readouterr().out
    assert main(["build", str(tmp_path / "bf16_peek.json")]) == 0  # not asked for bf16: float64 and float32 pass it
    capsys.readouterr()
    run = ["train", str(tmp_path / "bf16_peek.json"), "--data", "digits", "--resize", "5", "--out", str(tmp_path / "run"), "--steps", "1"]
    status = main([*run, "--precision", "bf16"])
    err = capsys.readouterr().err
    assert status == 2 and "fails the causality check" in err


def test_the_tolerance_is_zero_on_the_cpu_and_a_noise_floor_elsewhere_that_still_catches_a_leak(registry):
    torch.manual_seed(0)
    clean = arblocks.build_model(spec_with({"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8}, registry), registry=registry)
    report = check_model(clean, registry=registry, precisions=("float32", "bf16"))
    assert report.ok and report.modes["eval"].precisions == {"float32": 0.0, "bf16": 0.0}  # bit for bit
    noisy = arblocks.build_model(spec_with({"type": "noisy"}, registry), registry=registry)
    measured = check_model(noisy, registry=registry, modes=("eval",))
    tolerance = measured.modes["eval"].precisions["float32"]
    assert measured.ok and 0 < tolerance < 1e-4  # the noise floor: about 4 x 2e-6 through the layers
    leaking = arblocks.build_model(spec_with({"type": "noisy", "leak": 1e-3}, registry), registry=registry)
    caught = check_model(leaking, registry=registry, modes=("eval",))
    assert not caught.ok and caught.modes["eval"].precisions["float32"] > 0  # above the floor: a leaked future value


def larger(spec: arblocks.ModelSpec, size: int = 12) -> arblocks.ModelSpec:
    return spec.model_copy(update={"image": spec.image.model_copy(update={"height": size, "width": size})})


@pytest.mark.parametrize("block, precisions, kind", [("float32_peek", ("float32",), "reach"), ("bf16_peek", ("float32", "bf16"), "reach"),
                                                     ("float32_right", ("float32",), "order")])
def test_the_block_proof_walks_every_block_in_the_low_precisions_too(registry, block, precisions, kind):
    """At full size the guarantee rests on the block proof: its walk runs in the check's precisions, so a block whose
    float32 or bf16 path leaks fails there, at the block, with the model-level walks and their sizes aside: beyond
    its stated reach (the full-size escape walk) or inside it (the window's walk)."""
    config = {"type": block} if kind == "reach" else {"type": block, "mask": "B", "kernel_size": 3, "channels": 8}
    spec = larger(spec_with(config, registry))
    caught = check_spec(spec, size=5, registry=registry, thorough=True, precisions=precisions)
    assert caught.full_size.status == "FAILED" and caught.full_size.proofs.precisions == precisions
    assert {v.path for v in caught.full_size.proofs.violations} == {"/body/1"}
    assert {v.kind for v in caught.full_size.proofs.violations} == {kind}
    blind = check_spec(spec, size=5, registry=registry, thorough=True, precisions=())  # the float64 block proof alone
    assert blind.full_size.status != "FAILED"


def test_a_complete_block_proof_spares_the_model_level_float64_walk(registry):
    """Once every block is proven at full size (in float64 and the low precisions), the whole model's float64 walk
    would re-prove it at the smaller size: it is left out, and the report says which walks ran."""
    clean = larger(spec_with({"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 8}, registry))
    report = check_spec(clean, size=5, registry=registry, thorough=True, precisions=("float32", "bf16"))
    assert report.ok and report.full_size.complete and report.full_size.status == "block by block"
    assert [m.perturbations for m in report.modes.values()] == [0, 0]
    assert report.modes["eval"].precisions == {"float32": 0.0, "bf16": 0.0} and report.modes["train"].precisions == {}
    assert report.to_dict()["modes"]["eval"]["precisions"] == {"float32": 0.0, "bf16": 0.0}
    assert report.to_dict()["full_size"]["block_walk_precisions"] == ["float64", "float32", "bf16"]
    assert "eval: ok: 0 violation(s), batch independent; value walk in float32 (bit for bit), bf16 (bit for bit)" in report.summary()
    assert "value walk in float64, float32, bf16" in report.summary()
    # a block proof that fails (or leaves blocks uncovered) keeps the whole walk, in every mode and precision
    leaky = check_spec(larger(spec_with({"type": "float32_peek"}, registry)), size=5, registry=registry, thorough=True)
    assert all(m.perturbations > 0 and "float32" in m.precisions for m in leaky.modes.values())
    assert "perturbation in float32" in {v.found_by for v in leaky.violations}
