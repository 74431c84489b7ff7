"""A process-wide default socket timeout (``socket.setdefaulttimeout``, which
HTTP clients and test helpers set) must not reach a pool's own sockets.

Every socket a pool makes (a worker's stream, the worker template's control
socket) waits as long as its peer is quiet. One that took the default timeout
read an idle template as dead, and every worker it had forked died with it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

import snakepit
from tests.pool import _default_timeout_module, _tasks

#: Far shorter than the pauses below: any pool socket that took it times out.
DEFAULT_TIMEOUT = 0.05
IDLE = 0.4


@pytest.fixture
def default_timeout() -> Iterator[None]:
    socket.setdefaulttimeout(DEFAULT_TIMEOUT)
    try:
        yield
    finally:
        socket.setdefaulttimeout(None)


def _wait_until_idle(pool: snakepit.Pool, size: int, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while pool.stats()["idle"] < size:
        if time.monotonic() > end:
            pytest.fail(f"workers did not come back: {pool.stats()}")
        time.sleep(0.02)


@pytest.mark.parametrize("spin_seconds", [0.0, 0.0002])
def test_idle_workers_and_their_template_outlive_a_default_timeout(
    default_timeout: None, spin_seconds: float
) -> None:
    with snakepit.Pool(2, spin_seconds=spin_seconds) as pool:
        assert pool.call(_tasks.add, 1, 2) == 3
        time.sleep(IDLE)  # every socket of the pool sat quiet past the timeout
        assert pool.submit(_tasks.add, 2, 3).result(timeout=30) == 5
        time.sleep(IDLE)
        # A frame larger than one receive (2 MiB inline), both ways.
        payload = b"x" * (2 << 20)
        assert pool.call(_tasks.size_of, payload) == len(payload)
        assert len(pool.call(_tasks.make_bytes, 2 << 20)) == 2 << 20
        shared = snakepit.share(np.arange(1 << 18, dtype=np.float64))
        assert pool.call(_tasks.total, shared) == float(shared.sum())
        stats = pool.stats()
        assert stats["crashes"] == 0, stats
        assert stats["restarts"] == 0, stats


def test_a_worker_started_under_a_default_timeout_after_a_crash_serves(
    default_timeout: None,
) -> None:
    # The replacement's sockets are made while the default is set.
    with snakepit.Pool(1) as pool:
        first = pool.call(_tasks.pid)
        os.kill(first, signal.SIGKILL)
        _wait_until_idle(pool, 1)
        time.sleep(IDLE)
        second = pool.call(_tasks.pid)
        assert second != first
        time.sleep(IDLE)
        assert pool.call(_tasks.add, 4, 5) == 9
        stats = pool.stats()
        assert stats["crashes"] == 1, stats


def test_a_default_timeout_set_in_the_template_and_the_worker_is_harmless() -> None:
    module = "tests.pool._default_timeout_module"
    with snakepit.Pool(
        1, preload=["numpy", module], initializer=_default_timeout_module.set_default_timeout
    ) as pool:
        assert pool.call(_default_timeout_module.default_timeout) == DEFAULT_TIMEOUT
        time.sleep(IDLE)
        assert pool.call(_tasks.add, 1, 1) == 2
        # A replacement is forked from the template that imported the module.
        os.kill(pool.call(_tasks.pid), signal.SIGKILL)
        _wait_until_idle(pool, 1)
        time.sleep(IDLE)
        assert pool.call(_tasks.add, 2, 2) == 4
        stats = pool.stats()
        assert stats["crashes"] == 1, stats
