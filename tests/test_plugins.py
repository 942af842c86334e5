"""Plugin loading: built-ins through the hook, entry points, isolation of broken plugins, duplicates."""

import json
import subprocess
import sys
import textwrap
import warnings

import pytest

from arblocks import RegistryError, SpecError, parse_spec
from arblocks.core.plugins import BUILTIN_PLUGINS, PluginWarning, load_registry
from tests.helpers import spec_dict

GOOD_PLUGIN = '''
from typing import Literal
from arblocks import BlockConfig, Elementwise, hookimpl

class ScaleConfig(BlockConfig):
    """Multiplies every value by a constant."""
    type: Literal["scale"] = "scale"
    factor: float = 2.0

class Scale(Elementwise):
    Config = ScaleConfig
    def forward(self, x):
        return x * self.config.factor

@hookimpl
def arblocks_register_blocks(register):
    register(Scale)
'''


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Two installed distributions with `arblocks` entry points: one works, one raises on import."""
    (tmp_path / "goodplug.py").write_text(GOOD_PLUGIN)
    (tmp_path / "brokenplug.py").write_text("raise ImportError('needs a library that is not installed')\n")
    for dist, module in [("goodplug", "goodplug"), ("brokenplug", "brokenplug")]:
        info = tmp_path / f"{dist}-1.2.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2\n")
        (info / "entry_points.txt").write_text(f"[arblocks]\n{dist} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ARBLOCKS_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ARBLOCKS_DISABLE_PLUGINS", raising=False)
    return tmp_path


def test_builtin_blocks_come_through_the_same_hook():
    registry = load_registry(entry_points=False)
    providers = {e.plugin for e in registry.find()}
    assert providers <= set(BUILTIN_PLUGINS)
    assert registry.blocks["masked_conv"].plugin == "arblocks.blocks.masked_conv"
    assert {"masked_conv", "residual", "conv", "relu", "repeat"} <= set(registry.blocks)
    assert {"categorical", "bernoulli"} <= set(registry.heads)


def test_entry_point_plugin_loads_and_broken_one_is_a_warning(installed_plugins):
    with pytest.warns(PluginWarning, match="brokenplug.*needs a library"):
        registry = load_registry()
    assert registry.blocks["scale"].distribution == "goodplug"
    failed = {p.name: p.error for p in registry.failed}
    assert "ImportError" in failed["brokenplug"]


def test_strict_mode_makes_a_broken_plugin_fatal(installed_plugins, monkeypatch):
    monkeypatch.setenv("ARBLOCKS_STRICT_PLUGINS", "1")
    with pytest.raises(RegistryError, match="brokenplug"):
        load_registry()


def test_disabled_plugins_are_skipped_without_warning(installed_plugins, monkeypatch):
    monkeypatch.setenv("ARBLOCKS_DISABLE_PLUGINS", "brokenplug")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = load_registry()
    assert "scale" in registry.blocks


def test_unknown_type_names_the_plugin_that_failed(installed_plugins):
    with pytest.warns(PluginWarning):
        registry = load_registry()
    with pytest.raises(SpecError) as e:
        parse_spec(spec_dict([{"type": "squeeze_gate"}]), registry=registry)
    message = e.value.problems[0].message
    assert "unknown block type 'squeeze_gate'" in message and "brokenplug" in message and "needs a library" in message


def test_two_providers_of_one_name_is_an_error_naming_both(make_registry):
    from arblocks import hookimpl
    from arblocks.blocks.activations import POINTWISE

    class Copycat:
        @hookimpl
        def arblocks_register_blocks(self, register):
            register(POINTWISE[0])  # 'relu' again

    with pytest.raises(RegistryError) as e:
        make_registry(("copycat", Copycat()))
    assert "relu" in str(e.value) and "copycat" in str(e.value) and "arblocks.blocks.activations" in str(e.value)


def test_a_hook_that_does_not_exist_is_reported(make_registry):
    from arblocks import hookimpl

    class Typo:
        @hookimpl
        def arblocks_register_blokcs(self, register):
            pass

    with pytest.raises(RegistryError, match="arblocks_register_blokcs"):
        make_registry(("typo", Typo()))


@pytest.mark.slow
def test_cli_lists_plugin_blocks_and_schema_includes_them(installed_plugins):
    env = {"PYTHONPATH": str(installed_plugins), "PYTHONWARNINGS": "ignore"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-m", "arblocks", "blocks", "sca*", "--json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows == [{"type": "scale", "kind": "block", "plugin": "goodplug", "distribution": "goodplug", "description": "Multiplies every value by a constant."}]
    schema = subprocess.run([sys.executable, "-m", "arblocks", "schema"], capture_output=True, text=True, env=env)
    assert "block.scale" in json.loads(schema.stdout)["$defs"]
    text = subprocess.run([sys.executable, "-m", "arblocks", "blocks"], capture_output=True, text=True, env=env)
    assert "brokenplug" in text.stderr and "Traceback" not in text.stderr
    assert textwrap.dedent("scale").strip() in text.stdout


def test_registration_mistakes_name_the_plugin(make_registry):
    from typing import Literal

    from pydantic import BaseModel

    from arblocks import BlockConfig, Elementwise, hookimpl
    from arblocks.spec.errors import RegistryError

    class ScaleConfig(BlockConfig):
        type: Literal["scale"] = "scale"

    class Scale(Elementwise):
        Config = ScaleConfig

    class NotABlock:
        Config = ScaleConfig

    class Twice:
        @hookimpl
        def arblocks_register_blocks(self, register):
            register(Scale)
            register(Scale)

    class Stray:
        @hookimpl
        def arblocks_register_blocks(self, register):
            register(NotABlock)

    class Untyped(Elementwise):
        Config = BaseModel

    class NoType:
        @hookimpl
        def arblocks_register_blocks(self, register):
            register(Untyped)

    cases = [(Twice(), "plugin 'twice' (.*) registers the same class twice as block type 'scale'"),
             (Stray(), "plugin 'stray' (.*) registers .*NotABlock.* as a block type, but it is not a subclass of arblocks.core.block.Block"),
             (NoType(), "plugin 'notype' (.*): .*Untyped.* has no Config with a `type` field")]
    for plugin, message in cases:
        with pytest.raises(RegistryError, match=message):
            make_registry((type(plugin).__name__.lower(), plugin))
