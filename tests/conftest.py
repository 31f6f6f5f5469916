"""Fixtures of the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tessera.local import SYNTH_CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def synthesis_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every local federation of the run (and `tessera demo` in a subprocess) copies a node's
    synthetic database generated earlier in the run for the same jurisdiction, size, seed and
    vocabulary instead of generating it again. Never kept across runs: the generator may have
    changed."""
    before = os.environ.get(SYNTH_CACHE_ENV)
    os.environ[SYNTH_CACHE_ENV] = str(tmp_path_factory.mktemp("synthesis-cache"))
    yield
    if before is None:
        del os.environ[SYNTH_CACHE_ENV]
    else:
        os.environ[SYNTH_CACHE_ENV] = before


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a `packaging` test (a wheel built and installed, minutes) run first, whole:
    with two workers, the longest module then overlaps the rest instead of running alone at
    the end."""
    first = {item.path for item in items if item.get_closest_marker("packaging")}
    items.sort(key=lambda item: item.path not in first)
