"""Docs that can be checked against the code stay true."""

import inspect
import re
from pathlib import Path

import pytest

from arblocks.core import hookspecs
from arblocks.core.catalogue import render_catalogue

DOCS = Path(__file__).parent.parent / "docs"


def test_block_catalogue_is_current():
    from arblocks.core.plugins import load_registry

    expected = render_catalogue(load_registry(entry_points=False))
    assert (DOCS / "blocks.md").read_text() == expected, "regenerate with: arblocks blocks --markdown --no-plugins > docs/blocks.md"


def hooks():
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("arblocks_") and callable(fn)}


@pytest.mark.parametrize("name", sorted(hooks()))
def test_every_hook_is_documented_with_its_exact_signature(name):
    signature = f"{name}{inspect.signature(hooks()[name])}"
    assert f"`{signature}`" in (DOCS / "plugins.md").read_text()


def test_docs_name_no_hook_that_does_not_exist():
    named = set(re.findall(r"`(arblocks_\w+)\(", (DOCS / "plugins.md").read_text()))
    assert named == set(hooks())


@pytest.mark.parametrize("doc", ["spec-format.md", "blocks.md", "causality.md", "cli.md", "plugins.md", "architecture.md", "performance.md",
                                 "training.md", "results.md", "models.md", "tutorial.md"])
def test_docs_exist(doc):
    assert (DOCS / doc).stat().st_size > 500


@pytest.mark.slow
def test_parameter_counts_in_models_md_are_the_built_ones():
    from arblocks.spec.reading import read_spec_file
    from arblocks.staged.stages import build_any, parse_any

    rows = re.findall(r"^\| `(\w+\.json)` \| [^|]+ \| \**([\d,]+)\**", (DOCS / "models.md").read_text(), flags=re.M)
    specs = Path(__file__).parent.parent / "specs"
    assert {name for name, _ in rows} == {p.name for p in specs.glob("*.json")}, "every shipped spec is listed"
    for name, count in rows:
        model = build_any(parse_any(read_spec_file(specs / name)), device="meta")
        assert model.num_parameters() == int(count.replace(",", "")), name


@pytest.mark.slow
def test_the_pattern_plugin_example_in_plugins_md_passes_the_kit():
    from arblocks.testing import check_plugin

    registry = registry_with_plugin_from_docs("A minimal pattern plugin", "window")
    report = check_plugin("window", registry=registry, size=3)
    assert report.ok, report.summary()


@pytest.mark.slow
def test_the_local_block_example_in_plugins_md_samples_exactly_and_passes_the_kit():
    from arblocks.sampling.cached import CachedSampler
    from arblocks.testing import check_plugin

    registry = registry_with_plugin_from_docs("A local block needs only its reach", "blur")
    report = check_plugin("blur", registry=registry, size=4)
    assert report.ok, report.summary()
    assert {f.check for f in report.findings} >= {"causality", "incremental step"}
    from tests.helpers import build

    model = build([{"type": "masked_conv", "mask": "A", "channels": 6}, {"type": "above_blur"}], registry=registry, size=5)
    assert CachedSampler(model, registry).fallback_blocks() == []


def registry_with_plugin_from_docs(marker: str, name: str):
    """A registry with the plugin whose code is the first Python block after ``marker`` in docs/plugins.md."""
    import types

    from arblocks.core.plugins import load_registry

    text = (DOCS / "plugins.md").read_text()
    code = text.split(marker, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType(f"{name}_plugin")
    exec(compile(code, "plugins.md", "exec"), module.__dict__)
    return load_registry(entry_points=False, extra_plugins=[(name, module)])


def test_every_cli_option_is_in_the_docs():
    """Each verb's options appear in docs/cli.md or docs/training.md (a new flag without a row fails here)."""
    from arblocks.cli import parser

    docs = (DOCS / "cli.md").read_text() + (DOCS / "training.md").read_text()
    verbs = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    missing = [f"{verb} {option}" for verb, sub in verbs.items() for action in sub._actions for option in action.option_strings
               if option.startswith("--") and option != "--help" and not re.search(re.escape(option) + r"[` =,]", docs)]
    assert not missing, f"undocumented options: {missing}"
