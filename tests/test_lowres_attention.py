"""Causality at every resolution: a stream's per-position frontier, attention on a U-Net's 8x8 level, and
the checks shown to catch what they exist to catch there."""

import json
from pathlib import Path

import pytest
import torch

from arblocks import parse_spec
from arblocks.causality.block_proof import prove_blocks
from arblocks.causality.check import check_model, check_spec
from arblocks.core.builder import build_model
from arblocks.core.ordering import ordering_of
from arblocks.core.plugins import load_registry
from arblocks.core.readiness import position_order, ready_times, represented_pixels
from arblocks.core.streams import Causal, StreamInfo
from arblocks.spec.errors import SpecError
from tests.helpers import spec_dict
from tests.leaky_blocks import LeakyPlugin

SPECS = Path(__file__).parent.parent / "specs"


@pytest.fixture(scope="module")
def leaky():
    return load_registry(entry_points=False, extra_plugins=[("leaky", LeakyPlugin())])


def rank_of(ordering, size=8):
    spec = parse_spec(spec_dict([{"type": "elu"}], size=size, ordering=ordering))
    return ordering_of(spec).rank(size, size)


def test_a_lower_resolution_position_refers_to_the_earliest_pixel_of_its_block():
    raster = rank_of("raster")
    rows, cols = represented_pixels(raster, 2, 2)
    assert rows.tolist() == [[0, 0], [4, 4]] and cols.tolist() == [[0, 4], [0, 4]]  # top-left under raster
    assert position_order(raster, 2, 2).tolist() == [[0, 1], [2, 3]]
    mirrored = rank_of({"type": "raster", "reflect_cols": True})
    rows, cols = represented_pixels(mirrored, 2, 2)
    assert cols.tolist() == [[3, 7], [3, 7]]  # the top-right pixel comes first in each block
    assert position_order(mirrored, 2, 2).tolist() == [[1, 0], [3, 2]]
    # the frontier of a 'past' stream at 4x4: everything before the block's first pixel, in sub-pixels (C = 3)
    times = ready_times(StreamInfo(channels=6, height=4, width=4, causal=Causal.PAST), raster, 3)
    assert times.shape == (1, 4, 4) and times[0, 1, 2].item() == 3 * int(raster[2, 4])


def test_the_hybrid_builds_at_the_original_parameter_count():
    model = build_model(parse_spec(json.loads((SPECS / "pixelcnn_pp_attention8.json").read_text())), device="meta")
    # PixelCNN++ (class-conditional) and two attention modules of 1,009,560 (derivation in docs/models.md)
    assert model.num_parameters() == 53_863_880 + 2 * 1_009_560 == 55_883_000
    attention = [row for row in model.rows if row.type == "causal_attention"]
    assert [row.shape for row in attention] == ["80x8x8", "80x8x8"]


def small_hybrid(block_type="causal_attention") -> dict:
    data = json.loads((SPECS / "pixelcnn_pp_attention8_small.json").read_text())
    for module in (data["body"][9], data["body"][11]):
        module["body"][8]["type"] = block_type
    return data


@pytest.mark.slow
def test_the_small_hybrid_is_proven_causal_at_full_size_with_the_documented_coverage():
    report = check_spec(parse_spec(small_hybrid()), size="auto", thorough=True)
    assert report.ok, report.summary()
    assert report.full_size.status == "block by block"  # the 8x8 attention proven on its full-size streams too
    # docs/models.md: at 12x12, min 0.583 and mean 0.973 (worst channel per pixel), as the same U-Net without attention
    assert (round(report.min_coverage, 3), round(report.mean_coverage, 3)) == (0.583, 0.973)


@pytest.mark.slow
def test_attention_one_position_ahead_at_8x8_is_caught_by_the_check_and_by_the_block_proof(leaky):
    spec = parse_spec(small_hybrid("attention_one_ahead"), registry=leaky)
    report = check_spec(spec, size="auto", thorough=True, registry=leaky)
    assert not report.ok
    assert report.full_size.status == "FAILED"
    paths = {v.path for v in report.full_size.proofs.violations}
    assert paths == {"/body/9/body/8", "/body/11/body/8"}


def test_state_above_is_refused_where_the_ordering_does_not_generate_the_rows_above_first(leaky):
    body = [{"type": "rows_above_mean", "in": "x", "out": "h"}, {"type": "conv", "channels": 4}]
    raster = parse_spec(spec_dict(body, channels=1, size=4, bits=2), registry=leaky)
    assert check_model(build_model(raster, registry=leaky), registry=leaky).ok  # rows above are the past under raster
    transposed = parse_spec(spec_dict(body, channels=1, size=4, bits=2, ordering={"type": "raster", "transpose": True}), registry=leaky)
    with pytest.raises(SpecError, match="does not generate those rows before the pixel") as error:
        build_model(transposed, registry=leaky)
    assert error.value.problems[0].path == "/body/0"
    # and the leak it prevents is real: the harness sees it when the builder is told not to refuse
    report = check_model(build_model(transposed, registry=leaky, static_causality=False), registry=leaky)
    assert not report.ok


@pytest.mark.parametrize("block", [{"type": "causal_attention", "key": "low", "value": "low", "include_current": True},
                                   {"type": "transformer_block", "heads": 2}])
def test_attention_at_half_resolution_is_exactly_causal_and_samples_exactly(block):
    from tests.test_cached_sampling import assert_engines_agree

    body = [{"type": "down_right_shifted_conv", "in": "x", "out": "h", "kernel_size": [2, 2], "shift_right": True, "channels": 6},
            {"type": "down_right_shifted_conv", "in": "h", "out": "low", "kernel_size": [2, 2], "shift_right": True, "stride": 2},
            {**block, "in": "low", "out": "low"},
            {"type": "down_right_shifted_deconv", "in": "low", "out": "up"},
            {"type": "add", "in": ["h", "up"], "out": "h"}]
    spec = parse_spec(spec_dict(body, {"type": "logistic_mixture", "components": 2, "in": "h"}, channels=3, size=8))
    torch.manual_seed(0)
    model = build_model(spec)
    report = check_model(model)
    assert report.ok, report.summary()
    assert_engines_agree(model)


def test_the_block_proof_builds_attention_for_the_full_size_streams():
    """The check's copy holds masks for its small image; the proof at 32x32 uses the block built for 8x8 streams."""
    spec = parse_spec(small_hybrid())
    small = build_model(spec, image=spec.image.model_copy(update={"height": 12, "width": 12})).double()
    full = build_model(spec, device="meta")
    rank = ordering_of(spec).rank(32, 32)
    select = lambda module: type(module).__name__ == "CausalAttention"  # noqa: E731
    without = prove_blocks(small, full, rank, modes=("eval",), select=select, budget=1e11)
    assert without.uncovered == ["/body/9/body/8", "/body/11/body/8"] and not without.proven  # 3x3 masks on 8x8 streams
    layers = build_model(spec).double().layers
    proofs = prove_blocks(small, full, rank, modes=("eval",), select=select, budget=1e11, full_layer=lambda i: layers[i])
    assert proofs.proven == ["/body/9/body/8", "/body/11/body/8"] and not proofs.violations
    # a check's copy at 4x4 holds 1x1 masks, which broadcast over the 8x8 streams: the proof must not use them
    tiny = build_model(spec, image=spec.image.model_copy(update={"height": 4, "width": 4})).double()
    proofs = prove_blocks(tiny, full, rank, modes=("eval",), select=select, budget=1e11, full_layer=lambda i: layers[i])
    assert proofs.proven == ["/body/9/body/8", "/body/11/body/8"] and not proofs.violations


@pytest.mark.slow
def test_the_kit_places_blocks_at_half_resolution_and_catches_a_leak_there_only(leaky):
    from arblocks.testing import HALF_CASE, check_block

    report = check_block("attention_ahead_when_downsampled", registry=leaky, checks=("causality",))
    failed = {f.case.split(", ")[-1] for f in report.failures() if f.check == "causality"}
    assert failed == {HALF_CASE.split(", ")[-1]}, report.summary()


def test_the_kit_builds_deconv_on_a_half_size_variable():
    from arblocks.testing import EARLIER_HALF_CASE, check_block

    report = check_block("deconv", checks=("causality",))
    assert [f.ok for f in report.findings if f.case.endswith(EARLIER_HALF_CASE)] == [True] * 4
