"""Attention patterns: their definitions, their use per head, and that a model follows exactly the pattern it is given."""

import json
from typing import Literal

import pytest
import torch

from arblocks import SpecError, build_model, hookimpl, parse_spec
from arblocks.attention.patterns import AttentionPattern, PatternConfig, attention_mask, pattern_of
from arblocks.attention.sequence import SequencePositions
from arblocks.causality.check import perturbation_map
from arblocks.core.plugins import get_registry

from .helpers import problems_of


def mask_of(pattern: dict | list, height=4, width=4, per_pixel=1, heads=None, rank=None):
    registry = get_registry()
    spec = parse_spec(one_block_spec(pattern, heads=heads or (len(pattern) if isinstance(pattern, list) else 1)))
    configs = spec.body[1].pattern
    configs = configs if isinstance(configs, list) else [configs]
    rank = torch.arange(height * width).reshape(height, width) if rank is None else rank
    seq = SequencePositions.of_image(rank, per_pixel)
    return attention_mask([pattern_of(c, registry) for c in configs], seq, heads or len(configs)), seq


def one_block_spec(pattern, heads=1, channels=3, size=4, ordering="raster"):
    return {
        "name": "one-block",
        "image": {"channels": channels, "height": size, "width": size, "bits": 3},
        "ordering": ordering,
        "body": [
            {"type": "token_embedding", "in": "x", "out": "h", "channels": 8, "subpixels": True},
            {"type": "transformer_block", "subpixels": True, "heads": heads, "pattern": pattern},
        ],
        "head": {"type": "categorical", "projection": "per_subpixel"},
    }


def test_strided_parts_follow_the_sparse_transformer_definitions():
    mask = mask_of({"type": "strided", "stride": 4, "part": "local"}, 4, 4)[0][0]
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    assert torch.equal(mask, (j <= i) & (i - j <= 4))  # A(1): the previous l positions
    column = mask_of({"type": "strided", "stride": 4, "part": "stride"}, 4, 4)[0][0]
    assert torch.equal(column, (j <= i) & ((i - j) % 4 == 0))  # A(2): every l-th position
    both = mask_of({"type": "strided", "stride": 4}, 4, 4)[0][0]
    assert torch.equal(both, mask | column)


def test_fixed_parts_follow_the_sparse_transformer_definitions():
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    block = mask_of({"type": "fixed", "stride": 4, "part": "block"})[0][0]
    assert torch.equal(block, (j <= i) & (i // 4 == j // 4))
    summary = mask_of({"type": "fixed", "stride": 4, "summary": 2, "part": "summary"})[0][0]
    assert torch.equal(summary, (j <= i) & ((j % 4 >= 2) | (i == j)))  # every query also attends to itself


def test_local_1d_attends_to_its_block_and_the_memory_blocks_before():
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    mask = mask_of({"type": "local_1d", "block": 3, "memory_blocks": 2})[0][0]
    assert torch.equal(mask, (j <= i) & (j // 3 >= i // 3 - 2))


def test_local_2d_covers_the_query_block_and_its_flange_in_pixels_for_every_sub_pixel():
    mask, seq = mask_of({"type": "local_2d", "query_shape": [2, 2], "memory_flange": [1, 1]}, 6, 6, per_pixel=3)
    query = int(((seq.row == 3) & (seq.col == 2) & (seq.sub == 1)).nonzero())  # block rows 2-3, columns 2-3
    keys = mask[0, query].nonzero().flatten()
    rows, cols = seq.row[keys], seq.col[keys]
    assert rows.min() == 1 and rows.max() == 3 and cols.min() == 1 and cols.max() == 4
    assert not bool(((rows == 3) & (cols > 2)).any())  # later pixels of its own row: causal
    assert {(int(r), int(c), int(s)) for r, c, s in zip(rows, cols, seq.sub[keys])} >= {(3, 2, 0), (3, 2, 1), (1, 4, 2)}
    assert (3, 2, 2) not in {(int(r), int(c), int(s)) for r, c, s in zip(rows, cols, seq.sub[keys])}


def test_union_and_intersection_compose_patterns():
    a = {"type": "strided", "stride": 5, "part": "local"}
    b = {"type": "fixed", "stride": 4, "part": "block"}
    ma, mb = mask_of(a)[0][0], mask_of(b)[0][0]
    assert torch.equal(mask_of({"type": "union", "patterns": [a, b]})[0][0], ma | mb)
    assert torch.equal(mask_of({"type": "intersection", "patterns": [a, b]})[0][0], ma & mb)


def test_a_list_of_patterns_gives_each_group_of_heads_its_own():
    a, b = {"type": "strided", "stride": 4, "part": "local"}, {"type": "strided", "stride": 4, "part": "stride"}
    masks, _ = mask_of([a, b], heads=4)
    assert masks.shape == (4, 16, 16)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[2], masks[3]) and not torch.equal(masks[1], masks[2])
    assert torch.equal(masks[0], mask_of(a)[0][0]) and torch.equal(masks[3], mask_of(b)[0][0])


def test_a_pattern_never_reaches_the_future_even_under_another_ordering():
    rank = torch.arange(16).reshape(4, 4).T.contiguous()  # columns first
    mask, seq = mask_of({"type": "full"}, rank=rank, per_pixel=3)
    assert torch.equal(mask[0], seq.step[None, :] <= seq.step[:, None])


@pytest.mark.parametrize(
    "pattern",
    [
        {"type": "local_1d", "block": 5},
        {"type": "local_2d", "query_shape": [2, 2], "memory_flange": [1, 1]},
        [{"type": "strided", "stride": 12, "part": "local"}, {"type": "strided", "stride": 12, "part": "stride"}],
        {"type": "fixed", "stride": 6, "summary": 2},
    ],
    ids=["local_1d", "local_2d", "strided_per_head", "fixed"],
)
def test_one_block_depends_on_exactly_the_sub_pixels_its_pattern_allows(pattern):
    """Output at sub-pixel i reads the token embedding at every key k it attends to, i.e. token k - 1 (the shift)."""
    assert_exact_dependencies(pattern, size=4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "pattern, size, reordered",
    [
        ({"type": "local_1d", "block": 48}, 12, False),  # 432 sub-pixels, each query reads at most 96 earlier ones
        ([{"type": "strided", "stride": 24, "part": "local"}, {"type": "strided", "stride": 24, "part": "stride"}], 8, True),
    ],
    ids=["local_1d", "strided_in_group_order"],
)
def test_the_tiled_path_depends_on_exactly_the_sub_pixels_its_pattern_allows(pattern, size, reordered):
    model = build_model(parse_spec(one_block_spec(pattern, heads=2, size=size)))
    block = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock")
    assert all(block.attend.tiles) and any(block.attend.layout(g).order is not None for g in range(len(block.attend.tiles))) == reordered
    assert_exact_dependencies(pattern, size=size, samples=2)


def assert_exact_dependencies(pattern, size, samples=3):
    data = one_block_spec(pattern, heads=2, size=size)
    model = build_model(parse_spec(data)).double().eval()
    dep = perturbation_map(model, samples=samples)  # [C, H, W, C, H, W]
    mask, seq = mask_of(pattern, size, size, heads=2, per_pixel=3)
    attends = mask.any(0)  # [N, N] over (h w c) positions, in the union of the heads
    order = torch.argsort(seq.step)
    previous = torch.full_like(seq.step, -1)
    previous[order[1:]] = order[:-1]
    expected = torch.zeros(len(seq), len(seq), dtype=torch.bool)
    for i, k in attends.nonzero().tolist():
        if previous[k] >= 0:
            expected[i, previous[k]] = True
    got = dep.permute(1, 2, 0, 4, 5, 3).reshape(len(seq), len(seq)) != 0  # to (h w c) x (h w c)
    assert torch.equal(got, expected)


def test_pattern_problems_are_reported_at_their_json_path():
    data = one_block_spec({"type": "strided", "strde": 4})
    data["body"][1]["pattern"] = [{"type": "stridd", "stride": 4}, {"type": "strided", "stride": 0}]
    with pytest.raises(SpecError) as excinfo:
        parse_spec(data)
    problems = dict(problems_of(excinfo))
    assert "unknown attention pattern type 'stridd'; did you mean 'strided'?" in problems["/body/1/pattern/0/type"]
    assert problems["/body/1/pattern/1/stride"] == "must be > 0 (got 0)"


def test_heads_that_do_not_split_into_the_pattern_groups_are_refused():
    patterns = [{"type": "full"}, {"type": "full"}, {"type": "full"}]
    with pytest.raises(SpecError, match="4 heads do not split into 3 pattern groups"):
        build_model(parse_spec(one_block_spec(patterns, heads=4)))


def test_blocks_with_one_pattern_share_one_mask():
    data = json.loads(json.dumps(one_block_spec({"type": "local_1d", "block": 4})))
    data["body"].append(dict(data["body"][1]))
    model = build_model(parse_spec(data))
    first, second = (s for s in model.modules() if type(s).__name__ == "TransformerBlock")
    assert first.attend is second.attend


class SloppyConfig(PatternConfig):
    """A float mask instead of a bool one."""

    type: Literal["sloppy"] = "sloppy"


class Sloppy(AttentionPattern):
    Config = SloppyConfig

    def allowed(self, seq):
        return torch.ones(len(seq), len(seq))


class SloppyPlugin:
    @hookimpl
    def arblocks_register_attention_patterns(self, register):
        register(Sloppy)


def test_a_plugin_pattern_that_breaks_the_contract_gets_a_clear_error(make_registry):
    registry = make_registry(("sloppy", SloppyPlugin()))
    with pytest.raises(SpecError, match=r"attention pattern 'sloppy' must give a bool \[48, 48\] tensor, got torch.float32"):
        build_model(parse_spec(one_block_spec({"type": "sloppy"}), registry=registry), registry=registry)


def test_the_conformance_kit_checks_a_plugin_s_patterns(make_registry):
    from arblocks.testing import check_plugin

    report = check_plugin("sloppy", registry=make_registry(("sloppy", SloppyPlugin())), size=3)
    assert not report.ok
    assert {f.check for f in report.failures()} == {"builds"}
    assert "must give a bool" in report.failures()[0].detail


@pytest.mark.parametrize(
    "pattern",
    [
        {"type": "local_1d", "block": 32},
        {"type": "local_2d", "query_shape": [2, 4], "memory_flange": [2, 2]},
        [{"type": "local_1d", "block": 32}, {"type": "strided", "stride": 24, "part": "local"}],
        [{"type": "strided", "stride": 24, "part": "local"}, {"type": "strided", "stride": 24, "part": "stride"}],
        {"type": "strided", "stride": 7, "part": "stride"},
        {"type": "fixed", "stride": 12, "part": "block"},
    ],
    ids=["local_1d", "local_2d", "per_head", "sparse_transformer", "columns_of_7", "fixed_blocks"],
)
def test_tiled_attention_equals_the_dense_masked_attention_with_its_gradients(pattern):
    from arblocks.attention.kernels import MaskedAttention

    mask, _ = mask_of(pattern, 8, 8, per_pixel=3, heads=2)  # 192 sub-pixels
    attention = MaskedAttention(mask, heads=2, groups=len(pattern) if isinstance(pattern, list) else 1)
    assert all(attention.tiles)
    torch.manual_seed(0)
    q, k = (torch.randn(2, 2, 192, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    v = torch.randn(2, 2, 192, 6, dtype=torch.float64, requires_grad=True)
    dense = attention(q, k, v, kernel="dense")
    assert torch.equal(dense, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    tiled = attention(q, k, v)
    assert torch.allclose(dense, tiled, atol=1e-12)
    weights = torch.randn_like(dense)
    grads_dense = torch.autograd.grad((dense * weights).sum(), (q, k, v))
    grads_tiled = torch.autograd.grad((tiled * weights).sum(), (q, k, v))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads_dense, grads_tiled))


def test_a_head_group_that_cannot_be_tiled_runs_dense_beside_one_that_is():
    from arblocks.attention.kernels import MaskedAttention

    mask, _ = mask_of([{"type": "full"}, {"type": "local_1d", "block": 16}], 8, 8, per_pixel=3, heads=4)
    attention = MaskedAttention(mask, heads=4, groups=2)
    assert attention.head_groups == [(0, 2), (2, 4)] and attention.tiles[0] is None and attention.tiles[1]
    q, k, v = (torch.randn(1, 4, 192, 4, dtype=torch.float64) for _ in range(3))
    assert torch.allclose(attention(q, k, v), attention(q, k, v, kernel="dense"), atol=1e-12)


def test_a_pattern_of_disjoint_groups_is_tiled_in_group_order():
    """The column part of a strided pattern scatters its keys over every tile in sequence order (stride 24 is no
    multiple of a tile); grouped by residue class, each query tile reads one key tile."""
    from arblocks.attention.tiled import linked_groups, tile_layout

    mask, seq = mask_of({"type": "strided", "stride": 24, "part": "stride"}, 8, 8, per_pixel=3)
    assert torch.equal(linked_groups(mask[0]), seq.step % 24)  # the residue classes, each named by its first position
    layout = tile_layout(mask[0])
    assert layout.order is not None and layout.key_tiles.shape[-1] == 1
    assert torch.equal(torch.sort(layout.order).values, torch.arange(192))  # a permutation
    classes = [set((seq.step[layout.order[t : t + layout.tile]] % 24).tolist()) for t in range(0, 192, layout.tile)]
    assert all(len(c) == layout.tile // 8 for c in classes)  # whole residue classes of 8 positions per tile


def test_the_tilings_index_tensors_are_contiguous():
    """A sliced, strided index tensor made inductor's compiled backward of the gather corrupt the heap on 2 CPU threads
    (torch 2.13: `arblocks train --compile` crashed on sparse_transformer_small)."""
    from arblocks.attention.kernels import MaskedAttention

    pattern = [{"type": "strided", "stride": 24, "part": "local"}, {"type": "strided", "stride": 24, "part": "stride"}]
    mask, _ = mask_of(pattern, 8, 8, per_pixel=3, heads=2)
    attention = MaskedAttention(mask, heads=2, groups=2)
    layouts = [attention.layout(g) for g in range(2)]
    assert all(t.is_contiguous() for layout in layouts for t in (layout.key_tiles, layout.mask, layout.order) if t is not None)


def test_a_local_pattern_keeps_the_sequence_order():
    from arblocks.attention.tiled import tile_layout

    mask, _ = mask_of({"type": "local_1d", "block": 16}, 8, 8, per_pixel=3)
    assert tile_layout(mask[0]).order is None


def test_full_attention_is_never_tiled():
    from arblocks.attention.tiled import tile_layout

    mask, _ = mask_of({"type": "full"}, 8, 8, per_pixel=3)
    assert tile_layout(mask[0]) is None
