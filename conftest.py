"""Guards for tests/ and bench/: no worker process and no shared-memory segment may leak.

At the repository root so both suites share it; pytest also puts the root on
``sys.path``, so ``tests._tasks``-style modules import in workers too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snakepit.testing import leaked_segments, reap_leaked_workers


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_workers() -> Iterator[None]:
    """After each test module (and its pools), no worker may be alive or a zombie."""
    yield
    leaked = reap_leaked_workers()
    assert not leaked, f"worker processes survived the module: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    yield
    leftovers = leaked_segments()
    assert not leftovers, f"segments left in /dev/shm: {leftovers}"
