"""Guards for tests/ and bench/: no worker process and no shared-memory segment may leak.

At the repository root so both suites share it; pytest also puts the root on
``sys.path``, so ``tests._tasks``-style modules import in workers too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

if os.environ.get("SNAKEPIT_SOURCE_MODULES") == "1":  # before anything imports snakepit
    from tests._source_modules import prefer_source

    prefer_source()

from snakepit.testing import leaked_segments, reap_leaked_workers


@pytest.fixture(scope="session", autouse=True)
def _interrupts_raise() -> Iterator[None]:
    """Ctrl-C raises ``KeyboardInterrupt`` here even where the suite was
    started as a background job: a shell without job control starts those
    with SIGINT ignored, which Python then leaves ignored, and the tests that
    interrupt a waiting call would see nothing."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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
