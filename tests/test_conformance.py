"""The conformance kit passes honest blocks and catches a block whose declared causality is false."""

from typing import Literal

import pytest

from arblocks import Block, BlockConfig, hookimpl
from arblocks.testing import check_block
from tests.leaky_blocks import LeakyPlugin


@pytest.mark.slow
def test_kit_passes_a_builtin_block():
    report = check_block("masked_conv")
    assert report.ok, report.summary()


@pytest.mark.slow
def test_kit_catches_a_block_that_lies_about_its_causality(make_registry):
    registry = make_registry(("leaky", LeakyPlugin()))
    report = check_block("peek_below", registry=registry)
    assert not report.ok
    failed = {f.check for f in report.failures()}
    assert "causality" in failed and failed <= {"causality", "incremental step"}, report.summary()
    assert all("violation" in f.detail for f in report.failures() if f.check == "causality")


@pytest.mark.slow
def test_kit_catches_batchnorm_in_training_mode(make_registry):
    registry = make_registry(("leaky", LeakyPlugin()))
    report = check_block("batch_norm", registry=registry)
    assert "causality" in {f.check for f in report.failures()}


@pytest.mark.slow
def test_kit_passes_every_builtin_attention_pattern():
    from arblocks.core.plugins import get_registry
    from arblocks.testing import check_pattern

    for name in get_registry().attention_patterns:
        report = check_pattern(name, size=4)
        assert report.ok, report.summary()
        assert sum(f.check == "causality" for f in report.findings) >= 4  # pixel and sub-pixel, one and two blocks


@pytest.mark.slow
def test_kit_catches_a_causal_block_whose_incremental_step_is_wrong(make_registry):
    """Causal, but it reads its left neighbour while inheriting the pointwise reach of Elementwise: the cached sampler
    would compute it wrongly, and the size rule of the causality check would trust the wrong reach. The kit says both:
    the incremental step disagrees, and the block reads beyond the reach it states (and nothing else)."""
    from typing import Literal

    import torch.nn.functional as F

    from arblocks import BlockConfig, Elementwise, hookimpl

    class LeftSumConfig(BlockConfig):
        type: Literal["left_sum"] = "left_sum"

    class LeftSum(Elementwise):
        Config = LeftSumConfig

        def forward(self, x):
            return x + F.pad(x, (1, 0))[:, :, :, :-1]

    class Plugin:
        @hookimpl
        def arblocks_register_blocks(self, register):
            register(LeftSum)

    report = check_block("left_sum", registry=make_registry(("left", Plugin())))
    assert {f.check for f in report.failures()} == {"incremental step", "causality"}, report.summary()
    assert all("disagrees" in f.detail for f in report.failures() if f.check == "incremental step")
    assert all("beyond the reach the block states" in f.detail for f in report.failures() if f.check == "causality")


@pytest.mark.slow
def test_kit_runs_a_block_on_an_earlier_stages_variable():
    from arblocks.testing import EARLIER_CASE

    report = check_block("conv", checks=("causality", "batch-size independence", "incremental step"))
    assert report.ok, report.summary()
    assert {f.check for f in report.findings if f.case.endswith(EARLIER_CASE)} == {"causality", "batch-size independence", "incremental step"}


@pytest.mark.slow
def test_kit_passes_residual_whose_body_steps_layer_by_layer(monkeypatch):
    """A residual around a transformer block samples through Chain.forward_at (layer by layer, each layer's output in
    a buffer), not by recomputing its whole map: the kit's incremental check finds it equal to the full forward pass."""
    from arblocks.core.builder import Chain

    stepped = []
    step = Chain.forward_at
    monkeypatch.setattr(Chain, "forward_at", lambda self, *args: stepped.append(1) or step(self, *args))
    report = check_block("residual", checks=("causality", "incremental step"))
    assert report.ok, report.summary()
    assert any(f.case.startswith("example 1") and f.check == "incremental step" for f in report.findings)
    assert stepped  # the body with attention went through the chain's step, not a whole-map recomputation


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["auto", "flex"])
def test_kit_catches_an_attention_kernel_that_drops_kept_scores(monkeypatch, kernel):
    """A tiling, or a FlexAttention mask, that loses the last key of every tile (no leak: a wrong function). The
    causality checks pass it; the kernels' agreement with the dense masked attention does not."""
    from arblocks.attention import flex as flex_attention
    from arblocks.attention import kernels as attention_kernels
    from arblocks.testing import check_pattern

    if kernel == "flex" and not flex_attention.available():
        pytest.skip("this torch has no FlexAttention")
    if kernel == "auto":
        original = attention_kernels.tile_layout

        def lossy_layout(mask):
            layout = original(mask)
            if layout is not None:
                layout.mask[..., -1] = False
            return layout

        monkeypatch.setattr(attention_kernels, "tile_layout", lossy_layout)
    else:
        keep = flex_attention.FlexMask.mask_mod
        monkeypatch.setattr(flex_attention.FlexMask, "mask_mod", staticmethod(lambda mask: lambda b, h, q, k: keep(mask)(b, h, q, k) & (k % 16 != 15)))
    report = check_pattern("local_1d", size=4)
    failed = {f.check for f in report.failures()}
    assert failed == {"attention kernels agree"}, report.summary()
    assert all(f"kernel '{kernel}' differs" in f.detail for f in report.failures())


class _WidenConfig(BlockConfig):
    """Each channel twice: the width doubles, the groups stay in place."""

    type: Literal["widen"] = "widen"


class _Widen(Block):
    """A block that changes the width and has no incremental step (no forward_at, no reach)."""

    Config = _WidenConfig

    def __init__(self, config, inputs, aux, ctx):
        super().__init__(config, inputs, aux, ctx)
        self.output_info = inputs[0].with_(channels=2 * inputs[0].channels)

    def forward(self, x):
        return x.repeat_interleave(2, dim=1)  # channel i -> 2i and 2i + 1: the same group as i

    def causality(self, inputs, aux):
        return inputs[0]  # each output channel copies one of its own group: the input's state


class _WidenPlugin:
    @hookimpl
    def arblocks_register_blocks(self, register):
        register(_Widen)


@pytest.mark.slow
def test_kit_places_a_width_changing_block_in_a_residual_and_notes_a_missing_incremental_step(make_registry, capsys, monkeypatch):
    from arblocks.cli import main
    from arblocks.core import plugins

    registry = make_registry(("widen", _WidenPlugin()))
    report = check_block("widen", registry, checks=("causality", "incremental step"))
    assert report.ok, report.summary()
    residual = [f for f in report.findings if "in a residual" in f.case]
    assert residual and all("projected back to the residual's width" in f.case for f in residual)
    assert len(report.notes) == 1 and "widen has no incremental step" in report.notes[0] and "full passes of the block" in report.notes[0]
    plugins.get_registry.cache_clear()
    monkeypatch.setattr(plugins, "load_registry", lambda *a, **k: registry)
    try:
        assert main(["kit", "widen"]) == 0
        out = capsys.readouterr().out
        assert "widen  incremental step" in out and "note: widen has no incremental step" in out and "PASSED" in out
        assert main(["kit", "leaky-nothing"]) == 2
    finally:
        plugins.get_registry.cache_clear()
