"""Shared pytest configuration: Hypothesis profiles (CI runs more examples than a laptop), and
a render cache of the run's own."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")


@pytest.fixture(scope="session", autouse=True)
def _render_cache_of_this_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`plan` and `apply` keep rendered units between commands (`cli/rendercache.py`): in a
    folder of this run, not the user's cache (set in the environment, so the commands tests
    start as processes use it too)."""
    os.environ.setdefault("RECONCILER_CACHE_DIR", str(tmp_path_factory.mktemp("render-cache")))
