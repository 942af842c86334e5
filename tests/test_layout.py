"""The package's layout: the wings import only downwards (import-linter's layers contract in pyproject.toml), no
module imports another in a circle, and the flat layout's import paths still resolve."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def lint_imports(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
                           str(config), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_wings_import_only_the_wings_below_them():
    result = lint_imports(CONFIG, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract_and_names_both_modules(tmp_path):
    """The contract can fail: a copy of the package whose core imports the sampler inside a function (a lazy import is
    an import all the same) is refused, and the message names the importer and the imported module."""
    copy = tmp_path / "arblocks_copy"
    shutil.copytree(ROOT / "arblocks", copy, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    model = copy / "core" / "model.py"
    model.write_text(model.read_text() + "\n\ndef _sample_here(model, n):\n    from ..sampling.sample import sample_images\n\n"
                     "    return sample_images(model, n)\n")
    settings = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]
    contract = settings["contracts"][0]
    lines = ["[tool.importlinter]", 'root_packages = ["arblocks_copy"]', "", "[[tool.importlinter.contracts]]", f'id = "{contract["id"]}"',
             f'name = "{contract["name"]}"', 'type = "layers"', 'containers = ["arblocks_copy"]',
             "layers = [" + ", ".join(f'"{layer}"' for layer in contract["layers"]) + "]",
             f"exhaustive = {str(contract['exhaustive']).lower()}", "exhaustive_ignores = [" + ", ".join(f'"{m}"' for m in contract["exhaustive_ignores"]) + "]"]
    config = tmp_path / "importlinter.toml"
    config.write_text("\n".join(lines) + "\n")
    result = lint_imports(config, tmp_path)
    assert result.returncode != 0
    assert "arblocks_copy.core is not allowed to import arblocks_copy.sampling" in result.stdout, result.stdout
    assert "arblocks_copy.core.model -> arblocks_copy.sampling.sample" in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_the_library_imports_another_in_a_circle():
    """Every import counts: at the top of a module, inside a function, and under TYPE_CHECKING; a package's
    ``__init__`` is a module of its own (so nothing may import ``arblocks`` itself from inside)."""
    graph = grimp.build_graph("arblocks", exclude_type_checking_imports=False)
    assert len(graph.modules) > 60
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.build_graph("arblocks", exclude_type_checking_imports=False)
    graph.add_import(importer="arblocks.core.block", imported="arblocks.core.builder")
    assert ["arblocks.core.block", "arblocks.core.builder"] == [m for m in _cycles(graph)[0] if m in ("arblocks.core.block", "arblocks.core.builder")]


@pytest.mark.parametrize("old, name, new", [
    ("arblocks.incremental", "Reach", "arblocks.core.incremental"),
    ("arblocks.attention_patterns", "PatternConfig", "arblocks.attention.patterns"),
    ("arblocks.layers", "Conv", "arblocks.core.layers"),
    ("arblocks.sample", "save_grid", "arblocks.sampling.grid"),
    ("arblocks.transformations", "Transformation", "arblocks.core.augmentation"),
])
def test_the_flat_layouts_import_paths_still_work_with_a_deprecation_warning(old, name, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)


def test_the_public_names_of_the_top_level_package_and_of_the_old_packages():
    import arblocks
    from arblocks.causality import check_model, check_spec  # noqa: F401 - the README's and the docs' paths
    from arblocks.spec import BlockConfig, StreamRefs, stream_field  # noqa: F401

    for name in arblocks.__all__:
        assert getattr(arblocks, name) is not None


def test_the_architecture_page_draws_every_wing_of_the_contract():
    """docs/architecture.md opens with the wings; a wing added to the contract (or a subpackage, which the exhaustive
    contract makes one) is drawn there too."""
    contract = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"][0]
    wings = [w.strip() for layer in contract["layers"] for w in layer.split("|")]
    section = (ROOT / "docs" / "architecture.md").read_text().split("## The wings", 1)[1].split("\n## ", 1)[0]
    diagram = section.split("```")[1]
    assert [w for w in wings if w not in diagram] == []
    packages = sorted(p.name for p in (ROOT / "arblocks").iterdir() if (p / "__init__.py").exists())
    assert [p for p in packages if p not in wings] == []
