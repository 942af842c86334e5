import pytest
import torch

from arblocks.plugins import load_registry


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def make_registry():
    """Build a fresh registry with extra in-process plugins: ``make_registry(("name", plugin_obj), ...)``."""

    def make(*plugins, entry_points=False):
        return load_registry(entry_points=entry_points, extra_plugins=plugins)

    return make


@pytest.fixture
def leaky_installed(monkeypatch):
    """The CLI in this process with the leaky blocks of tests/leaky_blocks.py registered, as an installed plugin's
    would be (the real entry-point path is tested once, in a subprocess, in test_leak_corpus.py)."""
    from arblocks import plugins
    from tests.leaky_blocks import LeakyPlugin

    registry = load_registry(entry_points=False, extra_plugins=[("leaky", LeakyPlugin())])
    plugins.get_registry.cache_clear()
    monkeypatch.setattr(plugins, "load_registry", lambda *a, **k: registry)
    yield registry
    plugins.get_registry.cache_clear()


from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if __import__("os").environ.get("CI") else "dev")
