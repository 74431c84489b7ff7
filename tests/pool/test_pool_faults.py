"""Fault injection: every failure becomes a typed error and the pool carries on.

Each case runs a real worker into the fault, then checks that the caller got
the right error, that the next call succeeds, and (via tests/conftest.py) that
no worker, zombie or shared-memory segment is left behind.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import snakepit
from snakepit.errors import (
    OutOfMemoryError,
    PythonError,
    SerializationError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)

from . import _session_tasks, _tasks


@pytest.fixture
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, terminate_grace=0.3) as pool:
        yield pool


def _assert_recovered(pool: snakepit.Pool) -> None:
    assert pool.call(_tasks.add, 20, 22) == 42
    # Both slots work again (the crashed one was replaced).
    deadline = time.monotonic() + 30
    while pool.stats()["idle"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.stats()["idle"] == 2
    assert len({pool.call(_tasks.pid) for _ in range(8)} & set(pool.worker_pids())) >= 1


@pytest.mark.parametrize(
    ("task", "kind", "signum"),
    [
        (_tasks.segfault, "segfault", signal.SIGSEGV),
        (_tasks.abort, "abort", signal.SIGABRT),
        (_tasks.exit_3, "exit", None),
    ],
)
def test_crash_is_classified(
    pool: snakepit.Pool, task: Callable[[], None], kind: str, signum: int | None
) -> None:
    before = set(pool.worker_pids())
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(task)
    error = info.value
    assert error.exit_kind == kind
    assert error.signal == signum
    if signum is None:
        assert error.exit_code == 3
    else:
        # faulthandler's dump from the worker: where the native crash happened.
        assert f"in {task.__name__}" in (error.remote_traceback or "")
    _assert_recovered(pool)
    assert set(pool.worker_pids()) != before
    assert pool.stats()["crashes"] == 1


def test_sigkill_from_outside(pool: snakepit.Pool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    future = pool.submit(_tasks.sleep_reporting_pid, str(pid_file), 60)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    with pytest.raises(WorkerCrashedError) as info:
        future.result(timeout=30)
    assert info.value.exit_kind == "killed"
    assert info.value.signal == signal.SIGKILL
    _assert_recovered(pool)


def test_memory_limit_exceeded(pool: snakepit.Pool) -> None:
    with pytest.raises(OutOfMemoryError) as info:
        pool.call(_tasks.exceed_memory_limit)
    assert isinstance(info.value, MemoryError)
    assert info.value.suggestion
    _assert_recovered(pool)


def test_infinite_loop_times_out(pool: snakepit.Pool) -> None:
    started = time.monotonic()
    with pytest.raises(WorkerTimeoutError) as info:
        pool.options(timeout=0.5).call(_tasks.spin_forever)
    assert time.monotonic() - started < 10
    assert info.value.timeout == 0.5
    assert "in spin_forever" in (info.value.remote_traceback or "")  # where it was stuck
    _assert_recovered(pool)


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_c_call_that_never_returns(pool: snakepit.Pool, ignore_sigterm: bool) -> None:
    with pytest.raises(WorkerTimeoutError):
        pool.options(timeout=0.5).call(_tasks.c_call_forever, ignore_sigterm)
    _assert_recovered(pool)


def test_other_calls_survive_a_crash(pool: snakepit.Pool, tmp_path: Path) -> None:
    slow = pool.submit(_tasks.sleep_reporting_pid, str(tmp_path / "pid"), 0.5)
    crash = pool.submit(_tasks.segfault)
    queued = [pool.submit(_tasks.add, i, i) for i in range(10)]
    with pytest.raises(WorkerCrashedError):
        crash.result(timeout=30)
    assert slow.result(timeout=30) is None
    assert [f.result(timeout=30) for f in queued] == [2 * i for i in range(10)]


def test_exception_while_unpickling_arguments(pool: snakepit.Pool) -> None:
    with pytest.raises(SerializationError) as info:
        pool.call(_tasks.identity, _tasks.poison())
    assert info.value.direction == "decode"
    assert "cannot be unpickled here" in str(info.value)
    assert pool.stats()["crashes"] == 0
    _assert_recovered(pool)


def test_unpicklable_result(pool: snakepit.Pool) -> None:
    with pytest.raises(SerializationError) as info:
        pool.call(_tasks.unpicklable_result)
    assert info.value.direction == "encode"
    assert pool.stats()["crashes"] == 0
    _assert_recovered(pool)


def test_worker_killed_while_writing_shared_memory(pool: snakepit.Pool) -> None:
    array = snakepit.zeros(1 << 20, "int32")
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(_tasks.fill_then_die, array)
    assert info.value.exit_kind == "killed"
    assert np.all(array[: array.size // 2] == 7)  # the write landed, memory is intact
    assert np.all(array[array.size // 2 :] == 0)
    pool.call(_tasks.fill, array, 1)
    assert np.all(array == 1)
    _assert_recovered(pool)


def test_crash_inside_initializer_is_retried(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    with snakepit.Pool(
        workers=1, initializer=_tasks.crash_first_time, initargs=(str(marker),)
    ) as pool:
        assert pool.call(_tasks.add, 1, 2) == 3
        assert marker.exists()
        assert pool.stats()["crashes"] == 1
        assert pool.health()["workers"][0]["last_exit"] == "segfault"


def test_initializer_that_fails_on_restarts_makes_calls_fail_not_hang(tmp_path: Path) -> None:
    # At construction a raising initializer fails Pool(...) (test_construction.py);
    # on the restarts after a crash it gives the position up instead.
    marker = tmp_path / "refuse"
    with snakepit.Pool(
        workers=1,
        initializer=_session_tasks.refuse_unless_missing,
        initargs=(str(marker),),
        worker_max_crashes=1,
        restart_backoff=(0.0, 0.05),
        start_timeout=30,
    ) as pool:
        marker.touch()
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        with pytest.raises(WorkerUnavailableError, match="initializer refuses now"):
            pool.submit(_tasks.add, 1, 2).result(timeout=30)
        assert pool.stats()["unhealthy"] == 1


def test_python_errors_are_not_crashes(pool: snakepit.Pool) -> None:
    pids = set(pool.worker_pids())
    with pytest.raises(PythonError):
        pool.call(_tasks.identity, 1, unexpected=True)
    assert set(pool.worker_pids()) == pids
    assert pool.stats()["crashes"] == 0


def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys, time
        import snakepit
        pool = snakepit.Pool(workers=2)
        print(*pool.worker_pids(), flush=True)
        time.sleep(600)
        """
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    workers = [proc for proc in map(_maybe, pids) if proc is not None]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    snakepit.zero_copy.collect_garbage()


def _maybe(pid: int) -> Any:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def test_result_that_cannot_be_decoded_keeps_the_worker(pool: snakepit.Pool) -> None:
    pids = set(pool.worker_pids())
    with pytest.raises(SerializationError) as info:
        pool.call(_tasks.poison)  # unpickling it raises in the supervisor
    assert info.value.direction == "decode"
    assert set(pool.worker_pids()) == pids
    assert pool.stats()["crashes"] == 0
    _assert_recovered(pool)


def test_argument_too_large_for_shared_memory(pool: snakepit.Pool) -> None:
    from snakepit import zero_copy
    from snakepit.errors import SharedMemoryCapError

    # Free blocks earlier calls left mapped could hold the argument: give them
    # back first, so the cap really is 8 MiB above what is in use.
    gc.collect()
    zero_copy.trim()
    zero_copy.configure(cap_bytes=zero_copy.arena_stats()["mapped_bytes"] + (8 << 20))
    try:
        future = pool.submit(_tasks.total, np.ones(64 << 20, dtype=np.uint8))
        with pytest.raises(SharedMemoryCapError):
            future.result(timeout=30)
    finally:
        zero_copy.configure(cap_bytes=0)
    _assert_recovered(pool)
