"""The `flex` attention kernel: FlexAttention with a block mask from the pattern's mask computes what the dense masked
attention computes, is proven causal by the value-perturbation check, and falls back where it cannot run.

On the CPU FlexAttention runs without gradients only, and these tests run it uncompiled (its eager reference) to stay
quick; the gradient comparison needs a GPU."""

import warnings

import pytest
import torch

from arblocks import SpecError, build_model, parse_spec
from arblocks.attention import flex as flex_module
from arblocks.attention.kernels import MaskedAttention
from arblocks.causality.check import check_model

from .test_attention_patterns import mask_of, one_block_spec

pytestmark = pytest.mark.skipif(not flex_module.available(), reason="this torch has no FlexAttention")

PATTERNS = {
    "full": {"type": "full"},
    "local_1d": {"type": "local_1d", "block": 20},
    "local_2d": {"type": "local_2d", "query_shape": [2, 4], "memory_flange": [2, 2]},
    "sparse_transformer": [{"type": "strided", "stride": 48, "part": "local"}, {"type": "strided", "stride": 48, "part": "stride"}],
    "fixed": {"type": "fixed", "stride": 12, "summary": 2},
}


@pytest.fixture(autouse=True)
def eager_flex(monkeypatch):
    monkeypatch.setattr(flex_module, "COMPILE", False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention.*")
        yield


def attention_of(pattern, size=16, heads=2):
    mask, _ = mask_of(pattern, size, size, per_pixel=3, heads=heads)
    return MaskedAttention(mask, heads, len(pattern) if isinstance(pattern, list) else 1, flex=True)


@pytest.mark.parametrize("pattern", PATTERNS.values(), ids=PATTERNS.keys())
def test_flex_attention_equals_the_dense_masked_attention(pattern):
    attention = attention_of(pattern)  # 768 sub-pixels: six blocks of 128 each way
    torch.manual_seed(0)
    q, k = (torch.randn(2, 2, 768, 4, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 2, 768, 8, dtype=torch.float64)
    with torch.no_grad():
        dense, flex = attention(q, k, v, kernel="dense"), attention(q, k, v, kernel="flex")
        by_group = [f(*(t[:, start:end] for t in (q, k, v))) for f, (start, end) in zip(attention.flex, attention.head_groups)]
    assert torch.allclose(dense, torch.cat(by_group, 1), atol=1e-10)
    assert torch.equal(flex, torch.cat(by_group, 1))  # `kernel="flex"` ran FlexAttention


def test_a_column_pattern_is_put_in_the_order_that_keeps_fewer_blocks():
    local, column = attention_of(PATTERNS["sparse_transformer"]).flex  # the pattern list: local part, then column part
    assert local.order is None and column.order is not None
    assert flex_module.kept_blocks(column.mask) < flex_module.kept_blocks(column.mask[column.order.argsort()][:, column.order.argsort()])
    assert int(local.kv_num_blocks.sum() + local.full_kv_num_blocks.sum()) == flex_module.kept_blocks(local.mask)


def test_with_gradients_on_the_cpu_the_auto_path_runs_and_gives_the_same_gradients():
    attention = attention_of(PATTERNS["sparse_transformer"], size=8)
    q, k, v = (torch.randn(1, 2, 192, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert not flex_module.usable(q)
    out = attention(q, k, v, kernel="flex")
    reference = attention(q, k, v, kernel="dense")
    assert torch.allclose(out, reference, atol=1e-12)
    grads, reference_grads = (torch.autograd.grad(o.sum(), (q, k, v)) for o in (out, reference))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads, reference_grads))


def test_without_gradients_flex_runs_on_the_cpu_even_for_inputs_that_could_take_one():
    attention = attention_of(PATTERNS["local_1d"], size=8)
    q, k, v = (torch.randn(1, 2, 192, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    with torch.no_grad():
        assert flex_module.usable(q)
        assert torch.allclose(attention(q, k, v, kernel="flex"), attention(q, k, v, kernel="dense"), atol=1e-12)


def flex_model(pattern, size=4):
    data = one_block_spec(pattern, heads=2, size=size)
    data["body"][1]["kernel"] = "flex"
    torch.manual_seed(0)
    return build_model(parse_spec(data))


@pytest.mark.slow
def test_a_flex_model_is_exactly_causal_by_value_perturbation():
    model = flex_model(PATTERNS["sparse_transformer"], size=8)
    report = check_model(model, modes=("eval",), method="perturbation")
    assert report.ok, report.summary()


@pytest.mark.slow
def test_the_check_catches_a_leak_in_the_flex_path_alone():
    """A mask_mod that keeps every score inside the blocks it is applied to (the future half of the diagonal blocks):
    the dense and tiled paths are untouched, the perturbation check still sees the leak."""
    model = flex_model({"type": "local_1d", "block": 8})
    block = next(m for m in model.modules() if type(m).__name__ == "TransformerBlock")
    for flex in block.attend.flex:
        flex.mask.fill_(True)
    report = check_model(model, modes=("eval",), method="perturbation")
    assert not report.ok and report.violations


def test_flex_on_a_torch_without_it_is_refused_at_the_kernel_field(monkeypatch):
    monkeypatch.setattr(flex_module, "available", lambda: False)
    data = one_block_spec({"type": "full"})
    data["body"][1]["kernel"] = "flex"
    with pytest.raises(SpecError, match="needs torch.nn.attention.flex_attention") as excinfo:
        build_model(parse_spec(data))
    assert "/body/1/kernel" in str(excinfo.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention has no backward pass on the CPU")
def test_compiled_flex_attention_gives_the_dense_gradients_on_a_gpu(monkeypatch):
    monkeypatch.setattr(flex_module, "COMPILE", True)
    attention = attention_of(PATTERNS["sparse_transformer"]).cuda()
    q, k, v = (torch.randn(2, 2, 768, 16, device="cuda", requires_grad=True) for _ in range(3))
    out, reference = attention(q, k, v, kernel="flex"), attention(q, k, v, kernel="dense")
    assert torch.allclose(out, reference, atol=1e-4)
    grads, reference_grads = (torch.autograd.grad(o.sum(), (q, k, v)) for o in (out, reference))
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(grads, reference_grads))


@pytest.mark.slow
def test_compiled_flex_attention_on_the_cpu_equals_the_dense_attention(monkeypatch):
    """The compiled kernel skips the blocks the block tables leave out (the eager reference above applies the mask_mod
    to every score and ignores the tables): this is the test of the tables themselves."""
    monkeypatch.setattr(flex_module, "COMPILE", True)
    attention = attention_of(PATTERNS["sparse_transformer"])  # 768 sub-pixels; the column head in residue-class order
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 768, 16) for _ in range(3))
    with torch.no_grad():
        assert torch.allclose(attention(q, k, v, kernel="flex"), attention(q, k, v, kernel="dense"), atol=1e-5)


@pytest.mark.slow
def test_the_causality_check_runs_on_a_flex_model_with_compilation_on(monkeypatch):
    """The checks run in float64, which compiled FlexAttention does not take on the CPU: its eager reference runs there
    (this crashed `arblocks check --set defaults.transformer_block.kernel=flex`)."""
    monkeypatch.setattr(flex_module, "COMPILE", True)
    report = check_model(flex_model(PATTERNS["sparse_transformer"], size=8), modes=("eval",), method="perturbation")
    assert report.ok, report.summary()


def leaky_tables(monkeypatch):
    """create_block_mask, but every partly kept block on the diagonal listed as full (computed without the mask)."""
    original = flex_module.create_block_mask

    def leaky(*args, **kwargs):
        blocks = original(*args, **kwargs)
        num, indices = blocks.kv_num_blocks.clone(), blocks.kv_indices.clone()
        full_num, full_indices = blocks.full_kv_num_blocks.clone(), blocks.full_kv_indices.clone()
        for q in range(num.shape[-1]):
            listed = indices[0, 0, q, : num[0, 0, q]].tolist()
            if q in listed:  # move the diagonal block from the partial table to the full one
                rest = [b for b in listed if b != q]
                indices[0, 0, q, : len(rest)] = torch.tensor(rest, dtype=indices.dtype)
                num[0, 0, q] -= 1
                full_indices[0, 0, q, full_num[0, 0, q]] = q
                full_num[0, 0, q] += 1
        return flex_module.BlockMask.from_kv_blocks(num, indices, full_num, full_indices, BLOCK_SIZE=flex_module.BLOCK, mask_mod=blocks.mask_mod, seq_lengths=blocks.seq_lengths)

    monkeypatch.setattr(flex_module, "create_block_mask", leaky)


def test_block_tables_that_would_leak_are_refused_at_build(monkeypatch):
    leaky_tables(monkeypatch)
    data = one_block_spec({"type": "local_1d", "block": 8}, heads=2, size=8)
    data["body"][1]["kernel"] = "flex"
    with pytest.raises(SpecError, match="blocks listed as full that the mask does not keep whole") as excinfo:
        build_model(parse_spec(data))
    assert "/body/1/kernel" in str(excinfo.value)


@pytest.mark.slow
def test_unchecked_leaky_tables_do_leak_in_the_compiled_kernel(monkeypatch):
    """What the refusal above prevents: compiled, those tables make a query read later positions. The float64 checks
    cannot see it (they run the eager reference, which ignores the tables), so the tables are proven at build."""
    leaky_tables(monkeypatch)
    monkeypatch.setattr(flex_module, "table_problem", lambda *args: None)
    monkeypatch.setattr(flex_module, "COMPILE", True)
    flex = attention_of({"type": "local_1d", "block": 20}, size=8).flex[0]  # 192 positions: two blocks of 128
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 192, 16) for _ in range(3))
    later = v.clone()
    later[:, :, 100] += 1.0  # a value at position 100
    with torch.no_grad():
        changed = (flex(q, k, later) - flex(q, k, v)).abs().amax((0, 1, 3)) > 1e-6  # [N] outputs that moved
    assert changed[:100].any()  # earlier queries read it: a leak
