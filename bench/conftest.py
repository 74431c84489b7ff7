"""Benchmark-suite guards: no worker process and no shared-memory segment may leak.

``bench/`` is a package, so pytest puts the repository root on ``sys.path`` and
``bench._tasks`` is importable here and, through the inherited ``sys.path``, in
every worker process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snakepit.testing import leaked_segments, reap_leaked_workers


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_workers() -> Iterator[None]:
    """Pools are module fixtures: once a module is done, none of its workers may live."""
    yield
    leaked = reap_leaked_workers()
    assert not leaked, f"worker processes survived the module: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    yield
    leftovers = leaked_segments()
    assert not leftovers, f"segments left in /dev/shm: {leftovers}"
