"""The conformance kit passes honest blocks and catches a block whose declared causality is false."""

from arblocks.testing import check_block
from tests.leaky_blocks import LeakyPlugin


def test_kit_passes_a_builtin_block():
    report = check_block("masked_conv")
    assert report.ok, report.summary()


def test_kit_catches_a_block_that_lies_about_its_causality(make_registry):
    registry = make_registry(("leaky", LeakyPlugin()))
    report = check_block("peek_below", registry=registry)
    assert not report.ok
    failed = {f.check for f in report.failures()}
    assert failed == {"causality"}, report.summary()
    assert all("violation" in f.detail for f in report.failures())


def test_kit_catches_batchnorm_in_training_mode(make_registry):
    registry = make_registry(("leaky", LeakyPlugin()))
    report = check_block("batch_norm", registry=registry)
    assert "causality" in {f.check for f in report.failures()}


def test_kit_passes_every_builtin_attention_pattern():
    from arblocks.plugins import get_registry
    from arblocks.testing import check_pattern

    for name in get_registry().attention_patterns:
        report = check_pattern(name, size=4)
        assert report.ok, report.summary()
        assert sum(f.check == "causality" for f in report.findings) >= 4  # pixel and sub-pixel, one and two blocks
