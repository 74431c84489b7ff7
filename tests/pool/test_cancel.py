"""Cancelling running calls: ``Pool.cancel``, ``acall`` cancellation, Ctrl-C in
``with Pool``, ``shutdown(kill_running=True)`` (docs/crash-recovery.md).

Times are asserted only against the pool's own ``terminate_grace``, with room:
a call that unwinds on SIGINT frees its worker in milliseconds, one that
ignores it only when the grace has passed, so the bound tells the two apart.
A bound missed on a loaded machine is measured again before it fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import snakepit
from snakepit.errors import CallCancelledError
from snakepit.pool import CircuitBreakerRegistry
from snakepit.zero_copy import list_regions
from tests.pool import _cancel_tasks
from tests.pool._observe import gone

GRACE = 3.0
#: Bound for waits that should end at once (a test that hangs fails instead).
BOUND = 60.0
#: Measurements of a timed bound before it is called failed.
TRIES = 3


@pytest.fixture
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, terminate_grace=GRACE) as executor:
        yield executor


def _wait_for(path: Path, within: float = BOUND) -> str:
    deadline = time.monotonic() + within
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


def _start(
    pool: snakepit.Pool | Any, tmp: Path, name: str
) -> tuple[concurrent.futures.Future[Any], int, Path]:
    """Submit a long call that marks its start and its unwinding; wait until it runs."""
    started, unwound = tmp / f"{name}-started", tmp / f"{name}-unwound"
    future = pool.submit(_cancel_tasks.sleep_then_mark, str(started), str(unwound), BOUND * 10)
    return future, int(_wait_for(started)), unwound


def _within(limit: float, measure: Callable[[], float]) -> list[float]:
    """Measure until one run is under ``limit`` (at most TRIES runs); every time taken."""
    times: list[float] = []
    while len(times) < TRIES:
        times.append(measure())
        if times[-1] < limit:
            break
    return times


# ---------------------------------------------------------------- Pool.cancel


def test_a_running_call_cancelled_midway_frees_its_worker_within_the_grace(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    def measure() -> float:
        future, worker, unwound = _start(pool, tmp_path, f"run{time.monotonic_ns()}")
        started = time.monotonic()
        assert pool.cancel(future) is True
        # The future ended at once, typed, and catchable as executors' CancelledError.
        assert future.done()
        assert not future.cancelled()
        with pytest.raises(concurrent.futures.CancelledError) as info:
            future.result(timeout=0)
        assert isinstance(info.value, CallCancelledError)
        assert info.value.worker_id == 0
        replacement = pool.submit(_cancel_tasks.pid).result(BOUND)
        elapsed = time.monotonic() - started
        assert replacement != worker
        assert gone(worker)
        assert unwound.read_text() == "unwound"  # SIGINT let its finally block run
        return elapsed

    times = _within(GRACE, measure)
    assert min(times) < GRACE, times
    stats = pool.stats()
    assert stats["cancelled"] == len(times)
    assert stats["crashes"] == 0
    assert stats["failed"] == 0
    assert pool.health()["workers"][0]["last_exit"] == "cancelled"


def test_a_call_deaf_to_sigint_is_killed_after_the_grace(tmp_path: Path) -> None:
    grace = 0.5
    with snakepit.Pool(workers=1, terminate_grace=grace) as executor:
        started = tmp_path / "started"
        future = executor.submit(_cancel_tasks.sleep_ignoring_sigint, str(started), BOUND * 10)
        worker = int(_wait_for(started))
        begun = time.monotonic()
        assert executor.cancel(future)
        assert future.done()  # at once, not after the grace
        with pytest.raises(CallCancelledError):
            future.result(timeout=0)
        assert executor.submit(_cancel_tasks.pid).result(BOUND) != worker
        elapsed = time.monotonic() - begun
        assert gone(worker)
    # SIGINT did not stop it: the kill at the grace did (not before it, and
    # not much later: the generous upper bound only catches a hang).
    assert grace * 0.9 <= elapsed < grace + 10.0, elapsed
    assert executor.stats()["crashes"] == 0


def test_a_cancellation_counts_toward_no_crash_limit_circuit_or_retry(tmp_path: Path) -> None:
    circuits = CircuitBreakerRegistry(failure_threshold=1)
    # One crash would give the position up (more than 0 crashes) and open
    # the circuit; cancellations do neither, and idempotent calls are not retried.
    with snakepit.Pool(
        workers=1, terminate_grace=GRACE, worker_max_crashes=0, circuit_breaker=circuits
    ) as executor:
        view = executor.options(idempotent=True)
        for round_ in range(3):
            future, worker, _ = _start(view, tmp_path, f"r{round_}")
            assert executor.cancel(future)
            assert executor.submit(_cancel_tasks.pid).result(BOUND) != worker
        stats = executor.stats()
        health = executor.health()
    assert (stats["cancelled"], stats["crashes"], stats["retries"], stats["unhealthy"]) == (
        3,
        0,
        0,
        0,
    )
    assert health["status"] == "healthy"
    assert health["crashes_in_window"] == 0
    assert circuits.snapshot()["global"]["state"] == "closed"
    assert circuits.snapshot()["global"]["failures"] == 0


def test_kill_false_and_future_cancel_leave_a_running_call_alone(pool: snakepit.Pool) -> None:
    future = pool.submit(time.sleep, 0.5)
    deadline = time.monotonic() + BOUND
    while pool.stats()["busy"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert future.cancel() is False  # the stdlib contract stands
    assert pool.cancel(future, kill=False) is False
    assert future.result(BOUND) is None
    assert pool.cancel(future) is False  # done: nothing to cancel
    assert pool.stats()["cancelled"] == 0


def test_a_waiting_call_is_cancelled_and_waiters_hear_of_it(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    running, _, _ = _start(pool, tmp_path, "running")
    queued = pool.submit(_cancel_tasks.pid)
    assert pool.cancel(queued) is True
    assert queued.cancelled()
    done, _ = concurrent.futures.wait([queued], timeout=BOUND)
    assert queued in done
    assert pool.stats()["queue_depth"] == 0
    assert pool.cancel(running)
    assert pool.submit(_cancel_tasks.pid).result(BOUND) > 0


def test_calls_through_a_view_are_cancelled_too(pool: snakepit.Pool, tmp_path: Path) -> None:
    view = pool.options(timeout=BOUND)
    future, worker, unwound = _start(view, tmp_path, "view")
    assert view.cancel(future) is True
    with pytest.raises(CallCancelledError):
        future.result(timeout=0)
    assert view.submit(_cancel_tasks.pid).result(BOUND) != worker
    assert unwound.read_text() == "unwound"


def test_a_cancelled_session_call_replaces_the_session_worker(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    session = pool.options(session="model")
    before = session.submit(_cancel_tasks.pid).result(BOUND)
    future, worker, _ = _start(session, tmp_path, "session")
    assert worker == before
    assert pool.cancel(future)
    deadline = time.monotonic() + BOUND
    while pool.worker_pids() in ([], [worker]):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert gone(worker)


# ---------------------------------------------------------------------- acall


def test_cancelling_a_task_awaiting_acall_frees_its_worker(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    async def measure_once(name: str) -> tuple[float, int, int, Path]:
        started, unwound = tmp_path / f"{name}-started", tmp_path / f"{name}-unwound"
        task = asyncio.create_task(
            pool.acall(_cancel_tasks.sleep_then_mark, str(started), str(unwound), BOUND * 10)
        )
        deadline = time.monotonic() + BOUND
        while not started.exists() or not started.read_text():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        begun = time.monotonic()
        replacement = await asyncio.wait_for(pool.acall(_cancel_tasks.pid), BOUND)
        return time.monotonic() - begun, int(started.read_text()), replacement, unwound

    def measure() -> float:
        elapsed, worker, replacement, unwound = asyncio.run(
            measure_once(f"acall{time.monotonic_ns()}")
        )
        assert replacement != worker
        assert gone(worker)
        assert unwound.read_text() == "unwound"
        return elapsed

    times = _within(GRACE, measure)
    assert min(times) < GRACE, times
    assert pool.stats()["cancelled"] == len(times)
    assert pool.stats()["crashes"] == 0


# ------------------------------------------------------------------- shutdown


def test_shutdown_kill_running_stops_running_calls_within_the_grace(tmp_path: Path) -> None:
    executor = snakepit.Pool(workers=2, terminate_grace=GRACE)
    try:
        running = [_start(executor, tmp_path, f"s{i}") for i in range(2)]
        queued = executor.submit(_cancel_tasks.pid)
        begun = time.monotonic()
        executor.shutdown(kill_running=True)
        elapsed = time.monotonic() - begun
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    assert elapsed < GRACE, elapsed
    for future, worker, unwound in running:
        with pytest.raises(CallCancelledError):
            future.result(timeout=0)
        assert gone(worker)
        assert unwound.read_text() == "unwound"
    assert queued.cancelled()
    assert executor.worker_pids() == []
    assert executor.stats()["crashes"] == 0


# ----------------------------------------------------------- Ctrl-C in `with`

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import snakepit
    from tests.pool import _cancel_tasks

    tmp = sys.argv[1]
    futures = []
    try:
        with snakepit.Pool(workers=2, terminate_grace=1.0) as pool:
            for i in range(2):
                futures.append(pool.submit(
                    _cancel_tasks.sleep_then_mark, f"{tmp}/started-{i}", f"{tmp}/unwound-{i}", 600
                ))
            futures.append(pool.submit(time.sleep, 600))  # queued behind them
            if sys.argv[2] == "block":
                time.sleep(600)  # else the block ends, and its exit waits for the calls
    finally:
        print(" ".join(
            ("cancelled" if f.cancelled() else type(f.exception()).__name__)
            if f.done() else "pending"
            for f in futures
        ), flush=True)
    """
)


def _regions_of(pids: list[int]) -> list[str]:
    owners = {str(pid) for pid in pids}
    return [name for name in list_regions() if name.split("-")[1] in owners]


def _ctrl_c_run(root: Path, tmp: Path, where: str) -> float:
    for old in tmp.iterdir():
        old.unlink()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp), where],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    children: list[int] = []
    try:
        workers = [int(_wait_for(tmp / f"started-{i}")) for i in range(2)]
        children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
        assert set(workers) <= set(children)
        begun = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = process.communicate(timeout=BOUND)
        elapsed = time.monotonic() - begun
    finally:
        if process.poll() is None:  # failed: a second Ctrl-C, then a kill
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.communicate(timeout=10.0)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
        left = [pid for pid in children if not gone(pid, within=1.0)]
        regions = _regions_of([process.pid, *children])
        for name in regions:  # what the run left is removed, failed or not
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path("/dev/shm") / name.lstrip("/"))
    assert process.returncode in (1, -signal.SIGINT), err
    assert "KeyboardInterrupt" in err
    assert out.split() == ["CallCancelledError", "CallCancelledError", "cancelled"], (out, err)
    for i in range(2):
        assert (tmp / f"unwound-{i}").read_text() == "unwound"
    assert not left, left
    assert not regions, regions
    return elapsed


@pytest.mark.parametrize("where", ["block", "exit"])
def test_ctrl_c_in_a_with_pool_block_exits_within_two_seconds(tmp_path: Path, where: str) -> None:
    """Ctrl-C in the block, or while its end waits for the running calls."""
    root = Path(__file__).resolve().parents[2]
    times = _within(2.0, lambda: _ctrl_c_run(root, tmp_path, where))
    assert min(times) < 2.0, times
