"""Crashes and restarts leak no file descriptors, threads or mappings."""

from __future__ import annotations

import os
import threading
import time

import pytest

import snakepit
from snakepit.errors import WorkerCrashedError

from . import _tasks


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_crash_cycles_leak_no_descriptors_or_threads() -> None:
    with snakepit.Pool(workers=2, worker_max_crashes=100) as pool:
        pool.call(_tasks.shared_result, 1 << 16)  # map a worker region once
    fds, threads = _open_fds(), threading.active_count()
    with snakepit.Pool(workers=2, worker_max_crashes=100) as pool:
        for _ in range(5):
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
            result = pool.call(_tasks.shared_result, 1 << 16)
            assert result[7] == 7.0
            del result
    assert _open_fds() <= fds
    assert threading.active_count() <= threads


def test_calls_with_timeouts_leave_no_timers_behind() -> None:
    with snakepit.Pool(workers=2) as pool:
        timers = pool._supervisor.timers
        for _ in range(200):
            assert pool.options(timeout=3600).call(_tasks.add, 1, 1) == 2
            # White-box: deadlines live on the workers; the one timed action
            # is the monitor's pass that arms idle sockets (see _direct.py).
            assert len(timers) <= 1
        deadline = time.monotonic() + 5.0
        while len(timers) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(timers) == 0
