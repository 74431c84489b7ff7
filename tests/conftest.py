"""Suite-wide guards: no worker process and no shared-memory segment may leak."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest

from snakepit.zero_copy import _memory


def _worker_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "snakepit.worker" in " ".join(
                child.cmdline()
            ):
                found.append(child)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_leaked_workers() -> Iterator[None]:
    """After each test module (and its pools), no worker may be alive or a zombie."""
    yield
    leaked = _worker_children()
    for proc in leaked:
        proc.kill()
    psutil.wait_procs(leaked, timeout=5)
    assert not leaked, f"worker processes survived the test: {[p.pid for p in leaked]}"


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    yield
    # Close our own arena as the process exit would, then nothing may remain.
    _memory._close_at_exit()
    _memory._state.mappings.clear()
    mine = [n for n in _memory.list_regions() if n.startswith(f"/snakepit-{os.getpid()}-")]
    dead = _memory.collect_garbage()
    assert not mine, f"segments of the test process left in /dev/shm: {mine}"
    assert not dead, f"segments of dead processes left in /dev/shm: {dead}"
