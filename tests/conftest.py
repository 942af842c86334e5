import os

import pytest
import torch

from arblocks.core.plugins import load_registry

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core (`-n auto`), one thread each: torch's default of one thread per core in every worker would
    # oversubscribe the cores. The processes tests start inherit it, so results that depend on the summation order
    # (a resumed run against a straight one) agree across processes.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


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
    from arblocks.core import plugins
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
