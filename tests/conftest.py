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


from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if __import__("os").environ.get("CI") else "dev")
