"""The check at the size the model runs at: the size rule and the block-by-block proof.

The size rule says a check on a smaller image speaks for the full one when every border case of the full image
occurs in it; the block proof places each block's window dependencies at every full-size position. Both rest on
what they assume of real models, which these tests verify directly, and both are shown to catch what they exist for.
"""

from pathlib import Path

import pytest
import torch

from arblocks import build_model, parse_spec
from arblocks.causality.block_proof import prove_blocks
from arblocks.causality.check import check_image, check_spec, dependency_map, float64_probe
from arblocks.causality.size_rule import border_cases, size_rule, smallest_covering
from arblocks.core.ordering import ordering_of
from tests.helpers import shrunk_spec

SPECS = Path(__file__).resolve().parent.parent / "specs"

#: a PixelCNN++ in miniature: both streams, a stride-2 step down and up with skips, a joint head
MINI_PP = {
    "name": "mini pixelcnn++",
    "image": {"channels": 3, "height": 32, "width": 32, "bits": 8},
    "inputs": {"ones": {"type": "constant"}},
    "defaults": {"down_shifted_conv": {"channels": 4}, "down_right_shifted_conv": {"channels": 4},
                 "down_shifted_deconv": {"channels": 4}, "down_right_shifted_deconv": {"channels": 4}},
    "body": [
        {"type": "concat", "in": ["x", "ones"], "out": "xp"},
        {"type": "down_shifted_conv", "in": "xp", "out": "u", "kernel_size": [2, 3], "shift_down": True},
        {"type": "down_shifted_conv", "in": "xp", "out": "ul_above", "kernel_size": [1, 3], "shift_down": True},
        {"type": "down_right_shifted_conv", "in": "xp", "out": "ul_left", "kernel_size": [2, 1], "shift_right": True},
        {"type": "add", "in": ["ul_above", "ul_left"], "out": "ul", "push": "ul_skips"},
        {"type": "down_shifted_conv", "in": "u", "out": "u", "stride": 2},
        {"type": "down_right_shifted_conv", "in": "ul", "out": "ul", "stride": 2},
        {"type": "gated_resnet", "in": "ul", "conv": "down_right_shifted", "aux": "u", "out": "ul"},
        {"type": "down_shifted_deconv", "in": "u", "out": "u"},
        {"type": "down_right_shifted_deconv", "in": "ul", "out": "ul"},
        {"type": "gated_resnet", "in": "ul", "conv": "down_right_shifted", "aux": {"pop": "ul_skips"}, "out": "ul"},
    ],
    "head": {"type": "logistic_mixture", "components": 2, "in": "ul"},
}


def test_border_cases_along_one_axis():
    # a reach of 3 above: the first 3 rows are each their own case, every row below them is one case
    assert border_cases(32, 3, 0, 1) == {(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 3, 0)}
    assert smallest_covering(32, 3, 0, 1) == 4
    assert smallest_covering(32, 3, 2, 1) == 6
    # with a period of 4 the phases must all appear too, at a size the period divides
    # phases 0-3 at the full reach of 5 rows first occur at rows 5-8, so 9 rows, rounded up to the period
    assert smallest_covering(32, 5, 0, 4) == 12
    assert smallest_covering(6, 10, 10, 1) == 6  # a reach past the image: only the full size will do


def test_the_rule_follows_reaches_through_strides_skips_and_the_head():
    rule = size_rule(build_model(parse_spec(MINI_PP), device="meta"))
    assert rule.period == (2, 2)
    assert rule.needed[0] < 32 and rule.needed[1] < 32, rule
    assert rule.covers(*rule.needed) and not rule.covers(rule.needed[0] - 2, rule.needed[1])


@pytest.mark.slow
def test_what_the_rule_assumes_holds_on_a_real_model():
    """Every output of the full-size model depends on exactly the inputs (as offsets) that the output with the same
    border case depends on at the rule's size: the premise of the rule, checked on a two-scale model, gradient by gradient."""
    spec = parse_spec(MINI_PP)
    torch.manual_seed(0)
    full = build_model(spec).double()
    rule = size_rule(full)
    small = build_model(spec, image=check_image(spec, rule.needed)).double()
    small.load_state_dict(full.state_dict())
    dep_full, dep_small = (dependency_map(m) != 0 for m in (full, small))  # [1, H, W, C, H, W] (a joint head)
    e, period = rule.extent, rule.period

    def offsets(dep, row, col):
        _, _, _, _, h, w = dep.shape
        return {(c, r - row, q - col) for c, r, q in dep[0, row, col].nonzero().tolist()}

    def case(p, size, before, after, step):
        return (p % step, min(p, before), min(size - 1 - p, after))

    rows = {case(r, rule.needed[0], e.top, e.bottom, period[0]): r for r in reversed(range(rule.needed[0]))}
    cols = {case(c, rule.needed[1], e.left, e.right, period[1]): c for c in reversed(range(rule.needed[1]))}
    for row in range(32):
        for col in range(32):
            twin = rows[case(row, 32, e.top, e.bottom, period[0])], cols[case(col, 32, e.left, e.right, period[1])]
            assert offsets(dep_full, row, col) == offsets(dep_small, *twin), (row, col, twin)


def test_build_checks_at_a_size_the_rule_says_speaks_for_the_full_image():
    spec = parse_spec(MINI_PP)
    needed = size_rule(build_model(spec, device="meta")).needed
    report = check_spec(spec, values=())
    assert report.ok
    assert report.image[1:] == needed and needed != (32, 32)
    assert report.full_size.status == "size rule", report.full_size.reason
    assert f"every border case of 32x32 occurs at {needed[0]}x{needed[1]}" in report.full_size.reason


@pytest.mark.slow
@pytest.mark.parametrize("name, uncovered", [
    ("pixelcnn", set()), ("gated_pixelcnn", set()), ("pixelcnn_pp", set()), ("sparse_transformer", {"/body/0", "/body/1", "/body/2/body/0"}),
])
def test_shipped_architectures_keep_every_block_statement_at_full_size(name, uncovered):
    """Narrow twins (every width divided by 16) at the spec's own 32x32, proven block by block. The sequence model's
    embeddings (the shift to the previous sub-pixel wraps at the row's end, the positions' table is per position) and
    transformer blocks state no reach and cost too much on full-size streams: they are left to the whole-model check."""
    spec = shrunk_spec(SPECS / f"{name}.json", size=None)
    full = build_model(spec, device="meta")
    model = float64_probe(build_model(spec, image=check_image(spec, 8)), private=True)
    proofs = prove_blocks(model, full, ordering_of(spec).rank(32, 32))
    assert proofs.violations == []
    assert set(proofs.uncovered) == uncovered
    assert "/head" in proofs.proven


def test_the_block_proof_finds_a_wrong_statement_everywhere_at_full_size():
    """Mask B in a first layer that claims mask A: every position of the 24x24 image, found from a 3x3 window."""
    spec = parse_spec({"name": "b first", "image": {"channels": 3, "height": 24, "width": 24, "bits": 8},
                       "body": [{"type": "masked_conv", "mask": "B", "kernel_size": 3, "channels": 6}], "head": {"type": "categorical"}})
    full = build_model(spec, device="meta", static_causality=False)
    model = build_model(spec, image=check_image(spec, 5), static_causality=False).double()
    # the builder's states say 'inclusive' for mask B: claim 'strict' (mask A) as a lying block would
    from arblocks.core.streams import Causal

    full.steps[0].info = full.steps[0].info.with_(causal=Causal.STRICT)
    proofs = prove_blocks(model, full, ordering_of(spec).rank(24, 24), limit=10_000)
    seen = {v.output[1:] for v in proofs.violations if v.path == "/body/0"}
    assert seen == {(r, c) for r in range(24) for c in range(24)}
    assert all(v.kind == "order" and v.input[1:] == v.output[1:] for v in proofs.violations)
