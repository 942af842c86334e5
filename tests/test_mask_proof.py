"""Blocks proven at full size through their dependency masks (arblocks/causality/mask_proof.py).

Attention over a 32x32 image costs too much to prove position by position on its full-size streams; a block that
states its dependencies as boolean matrices is proven through them: the matrices against the full-size frontiers
(exact), the block's reads inside its matrices at the check's size, and a spot check of that at full size. Each part
is shown to catch the leak it exists for, and the shipped attention and sequence specs are proven by it.
"""

from pathlib import Path

import pytest
import torch

from arblocks import DependencyMask, build_model, load_spec, parse_spec
from arblocks.blocks.attention import CausalAttention
from arblocks.causality.block_proof import full_size_layers, prove_blocks
from arblocks.causality.check import check_image, check_spec, float64_probe
from arblocks.causality.mask_proof import unit_ready
from arblocks.core.ordering import ordering_of
from arblocks.core.plugins import load_registry
from arblocks.core.streams import Causal, StreamInfo
from tests.helpers import shrunk_spec, spec_dict
from tests.leaky_blocks import LeakyPlugin

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.fixture(scope="module")
def leaky():
    return load_registry(entry_points=False, extra_plugins=[("leaky", LeakyPlugin())])


def attention_spec(block_type: str, size: int = 24, registry=None):
    """A grayscale image, a mask-A convolution, then attention over its features (state 'past' throughout)."""
    body = [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 4, "out": "h"},
            {"type": block_type, "in": "h", "key": "h", "value": "h", "heads": 2}]
    return parse_spec(spec_dict(body, channels=1, size=size, bits=2), registry=registry)


def mask_proofs(spec, registry=None, small: int = 6, budget: float = 0.0):
    """The block proof of ``spec`` at its own size from a float64 copy built for ``small``, the full-stream budget
    at ``budget`` (0: every block without a reach goes through its mask)."""
    torch.manual_seed(0)
    full = build_model(spec, registry=registry, device="meta", static_causality=False)
    model = float64_probe(build_model(spec, registry=registry, image=check_image(spec, small), static_causality=False), private=True)
    rank = ordering_of(spec, registry).rank(spec.image.height, spec.image.width)
    return prove_blocks(model, full, rank, budget=budget, full_layer=full_size_layers(model, full, registry))


def test_causal_attention_is_proven_at_full_size_through_its_mask():
    proofs = mask_proofs(attention_spec("causal_attention"))
    assert proofs.violations == [] and proofs.uncovered == []
    assert proofs.by_mask == ["/body/1"] and "/body/1" in proofs.proven


def test_a_unit_is_ready_when_its_latest_channel_is_and_may_read_from_its_earliest():
    rank = torch.arange(4).reshape(2, 2)
    strict = StreamInfo(channels=6, height=2, width=2, causal=Causal.STRICT)  # groups 0, 1, 2 of two channels each
    assert unit_ready(strict, rank, 3, per_pixel=3, latest=True).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert unit_ready(strict, rank, 3, per_pixel=1, latest=True).tolist() == [2, 5, 8, 11]  # the pixel's last group
    assert unit_ready(strict, rank, 3, per_pixel=1, latest=False).tolist() == [0, 3, 6, 9]  # its first


def test_part_one_a_matrix_that_allows_the_future_at_full_size(leaky):
    """An honest mask of a block that is not causal: the matrix itself is tested against the frontiers."""
    body = [{"type": "masked_conv", "mask": "A", "kernel_size": 3, "channels": 4}, {"type": "masked_global_mean"}]
    spec = parse_spec(spec_dict(body, channels=1, size=12, bits=2), registry=leaky)
    proofs = mask_proofs(spec, leaky)
    found = [v for v in proofs.violations if v.path == "/body/1"]
    assert found and all(v.kind == "order" for v in found)
    assert all((v.input[1], v.input[2]) > (v.output[1], v.output[2]) for v in found)  # every one a later pixel


def test_part_two_a_block_that_reads_outside_the_matrix_it_states(leaky):
    proofs = mask_proofs(attention_spec("attention_mask_understated", registry=leaky), leaky)
    found = [v for v in proofs.violations if v.path == "/body/1"]
    assert found and all(v.kind == "mask" for v in found), proofs.violations
    assert "outside the dependency mask the block states (at 6x6, the check's size)" in str(found[0])
    # what it reads is the key or value one position ahead of the output
    v = found[0]
    assert v.slot in ("field 'key'", "field 'value'") and v.input[1] * 24 + v.input[2] == v.output[1] * 24 + v.output[2] + 1


def test_part_three_a_leak_on_full_size_streams_only(leaky):
    """Clean on the check's 6x6 image and in the matrices; its 'fast kernel' for streams wider than 16 reads ahead."""
    proofs = mask_proofs(attention_spec("attention_ahead_at_full_size", registry=leaky), leaky)
    found = [v for v in proofs.violations if v.path == "/body/1"]
    assert found and all(v.kind == "mask" and "(at full size)" in str(v) for v in found), proofs.violations
    # and on a 16x16 image, where the fast kernel never runs, the same block is proven
    clean = mask_proofs(attention_spec("attention_ahead_at_full_size", size=16, registry=leaky), leaky)
    assert clean.violations == [] and clean.by_mask == ["/body/1"]


def test_build_and_check_catch_the_full_size_only_leak(leaky):
    """The check runs on a smaller image, where the block is clean; the proof through the mask finds it at 24x24."""
    spec = attention_spec("attention_ahead_at_full_size", size=24, registry=leaky)
    for thorough in (False, True):
        report = check_spec(spec, size=8, registry=leaky, thorough=thorough, values=())
        assert report.image[1] <= 8 and report.modes["eval"].ok
        assert report.full_size.status == "FAILED", report.full_size.reason
        assert {v.kind for v in report.full_size.proofs.violations} == {"mask"}, thorough


@pytest.mark.parametrize("wrong, message", [
    (lambda self: DependencyMask({0: torch.ones(3, 3, dtype=torch.bool)}), "must be a bool [576, 576] tensor"),
    (lambda self: DependencyMask({"keys": torch.ones(576, 576, dtype=torch.bool)}), "names 'keys', which is not a map the block reads"),
    (lambda self: DependencyMask({0: torch.ones(576, 576)}), "must be a bool [576, 576] tensor (units of output x units of input), got torch.float32"),
])
def test_a_mask_that_breaks_the_contract_is_reported(monkeypatch, wrong, message):
    monkeypatch.setattr(CausalAttention, "dependency_mask", wrong)
    proofs = mask_proofs(attention_spec("causal_attention"))
    assert [v.kind for v in proofs.violations] == ["contract"]
    assert message in str(proofs.violations[0])


def test_a_map_the_mask_does_not_name_may_be_read_anywhere(monkeypatch):
    """Leaving the keys out says they may be read everywhere: then the matrix allows the future, which is found."""
    original = CausalAttention.dependency_mask
    monkeypatch.setattr(CausalAttention, "dependency_mask", lambda self: DependencyMask({k: v for k, v in original(self).reads.items() if k != "key"}))
    proofs = mask_proofs(attention_spec("causal_attention"))
    assert proofs.violations and {(v.kind, v.slot) for v in proofs.violations} == {("order", "field 'key'")}


def test_pixelsnail_is_proven_block_by_block_at_full_size():
    spec = load_spec(SPECS / "pixelsnail_small.json")
    proofs = mask_proofs(spec, small=8)
    assert proofs.violations == [] and proofs.uncovered == []
    attention = [p for p in proofs.proven if p.endswith("/body/9")]
    assert attention and set(proofs.by_mask) == set(attention)


@pytest.mark.slow
def test_the_sequence_models_are_proven_block_by_block_at_full_size():
    """The Sparse Transformer (a narrow twin at 32x32): its token and position embeddings and transformer blocks."""
    spec = shrunk_spec(SPECS / "sparse_transformer.json", size=None)
    proofs = mask_proofs(spec, small=8)
    assert proofs.violations == [] and proofs.uncovered == []
    assert {"/body/1", "/body/2/body/0"} <= set(proofs.by_mask) and "/body/0" in proofs.proven
