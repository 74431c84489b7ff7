"""Workers replaced on purpose: max_tasks_per_child, memory limits, idle timeout; cwd; async with.

Every test runs real workers. A recycle must not look like a crash: no crash
counted, no health crash, no ``worker.crash`` event; it is a
``worker.recycle`` event instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import OutOfMemoryError, PoolClosedError, SessionLostError, SnakepitError
from snakepit.pool import _startup
from snakepit.pool._recycle import RecyclePolicy, parse_bytes
from snakepit.telemetry._events import HEALTH_ALERT, WORKER_CRASH, WORKER_RECYCLE

from . import _recycle_tasks as tasks

MiB = 1 << 20
_handler_ids = itertools.count(1)


class Events:
    """The recycle, crash and health events of one pool."""

    def __init__(self) -> None:
        self.pool: str | None = None
        self.lock = threading.Lock()
        self.seen: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []

    def __call__(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        with self.lock:
            if self.pool is None or metadata.get("pool") == self.pool:
                self.seen.append((event, dict(measurements), dict(metadata)))

    def of(self, event: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        with self.lock:
            return [(m, md) for e, m, md in self.seen if e == event]


@pytest.fixture
def events() -> Iterator[Events]:
    sink = Events()
    handler_id = f"tests-recycle-{next(_handler_ids)}"
    telemetry.attach_many(handler_id, [WORKER_RECYCLE, WORKER_CRASH, HEALTH_ALERT], sink)
    try:
        yield sink
    finally:
        telemetry.detach(handler_id)


def _wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextlib.contextmanager
def _abandon_on_failure(pool: snakepit.Pool) -> Iterator[None]:
    """A failed test must not leave the pool's exit waiting for calls that never run."""
    try:
        yield
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _idle_checks(pool: snakepit.Pool) -> int:
    """Idle checks waiting on the monitor's heap."""
    supervisor = pool._supervisor
    with supervisor.lock:
        actions = [entry[2] for entry in supervisor.timers._heap]
    return sum(
        getattr(action, "func", None) == supervisor.recycler._check_idle for action in actions
    )


def _assert_no_crash(pool: snakepit.Pool, events: Events) -> None:
    stats = pool.stats()
    assert stats["crashes"] == 0
    assert stats["restarts"] == 0
    assert pool.health()["crashes_in_window"] == 0
    assert events.of(WORKER_CRASH) == []
    assert events.of(HEALTH_ALERT) == []


# ------------------------------------------------------------ max tasks


def test_max_tasks_per_child_1_gives_a_new_pid_per_call(events: Events) -> None:
    with snakepit.Pool(workers=1, max_tasks_per_child=1) as pool:
        events.pool = pool.name
        pids = [pool.call(tasks.pid) for _ in range(6)]
        assert len(set(pids)) == 6, pids
        assert _wait_for(lambda: len(events.of(WORKER_RECYCLE)) >= 6)
        _assert_no_crash(pool, events)
        assert pool.stats()["recycles"] >= 6
        recycled = events.of(WORKER_RECYCLE)
        assert {md["reason"] for _, md in recycled} == {"max_tasks_per_child"}
        assert all(md["replaced"] for _, md in recycled)
        assert all(m["calls"] == 1 for m, _ in recycled)
        assert {md["pid"] for _, md in recycled} >= set(pids)


def test_max_tasks_per_child_counts_calls_per_process(events: Events) -> None:
    with snakepit.Pool(workers=1, max_tasks_per_child=3) as pool:
        events.pool = pool.name
        pids = [pool.call(tasks.pid) for _ in range(9)]
        # Three processes, three calls each, in order.
        assert [pids[i] for i in (0, 3, 6)] == list(dict.fromkeys(pids))
        assert all(pids[i] == pids[i - i % 3] for i in range(9))
        assert len(set(pids)) == 3
        _assert_no_crash(pool, events)


def test_max_tasks_per_child_keeps_a_busy_pool_serving(events: Events) -> None:
    """Calls queued while workers retire all run; none is lost or failed."""
    with snakepit.Pool(workers=2, max_tasks_per_child=2) as pool:
        events.pool = pool.name
        futures = [pool.submit(tasks.nap, 0.001) for _ in range(40)]
        pids = [future.result(timeout=60) for future in futures]
        assert len(set(pids)) >= 20
        _assert_no_crash(pool, events)
        assert pool.stats()["failed"] == 0


# --------------------------------------------------------------- memory


def test_leaking_worker_is_recycled_after_its_reply(events: Events) -> None:
    with snakepit.Pool(workers=1) as probe:
        baseline = probe.call(tasks.private_resident)
    limit = baseline + 100 * MiB
    with snakepit.Pool(workers=1, max_memory_per_worker=limit) as pool:
        events.pool = pool.name
        pids = [pool.call(tasks.leak, 40) for _ in range(6)]
        # Each call keeps 40 MiB: the third one leaves the worker over the
        # limit, and it is replaced after replying (every call succeeded).
        assert pids[0] == pids[1] == pids[2]
        assert pids[3] != pids[2]
        assert pids[3] == pids[4] == pids[5]
        assert _wait_for(lambda: len(events.of(WORKER_RECYCLE)) >= 2)
        recycled = events.of(WORKER_RECYCLE)
        assert {md["reason"] for _, md in recycled} == {"max_memory_per_worker"}
        assert all(m["resident_bytes"] > limit for m, _ in recycled)
        assert pool.call(tasks.private_resident) < limit
        _assert_no_crash(pool, events)


def test_call_that_crosses_the_hard_limit_names_it(events: Events) -> None:
    limit = 400 * MiB
    with snakepit.Pool(workers=1, memory_limit_per_worker="400MiB") as pool:
        events.pool = pool.name
        before = pool.call(tasks.pid)
        with pytest.raises(OutOfMemoryError) as caught:
            pool.call(tasks.allocate, 1 << 30)
        error = caught.value
        assert isinstance(error, MemoryError)  # ``except MemoryError`` still works
        assert "memory_limit_per_worker=400.00 MiB" in str(error)
        assert error.total == limit
        assert error.device == "cpu"
        assert error.available is not None
        assert error.available < limit
        # The worker that hit its limit is replaced; the pool carries on.
        assert _wait_for(lambda: len(events.of(WORKER_RECYCLE)) >= 1)
        assert events.of(WORKER_RECYCLE)[0][1]["reason"] == "memory_limit_per_worker"
        assert pool.call(tasks.allocate, 8 * MiB) == float(MiB)
        assert pool.call(tasks.pid) != before
        _assert_no_crash(pool, events)


def test_leak_under_both_limits_is_recycled_before_it_fails(events: Events) -> None:
    with snakepit.Pool(workers=1) as probe:
        baseline = probe.call(tasks.private_resident)
    with snakepit.Pool(
        workers=1,
        max_memory_per_worker=baseline + 100 * MiB,
        memory_limit_per_worker="1GiB",
    ) as pool:
        events.pool = pool.name
        pids = [pool.call(tasks.leak, 40) for _ in range(30)]  # 1.2 GiB kept in all
        assert len(set(pids)) >= 5
        _assert_no_crash(pool, events)


def test_hard_limit_below_a_workers_start_is_reported() -> None:
    # Where the initializer's failure is raised (at construction or at the
    # first call), it names the limit.
    with (
        pytest.raises(SnakepitError, match="memory_limit_per_worker"),
        snakepit.Pool(workers=1, memory_limit_per_worker=1 << 20, worker_max_crashes=1) as pool,
    ):
        pool.call(tasks.pid)


# ---------------------------------------------------------------- idle


def test_idle_workers_exit_and_start_again_on_demand(events: Events) -> None:
    with snakepit.Pool(workers=2, idle_timeout=0.3) as pool, _abandon_on_failure(pool):
        events.pool = pool.name
        first = {pool.call(tasks.pid) for _ in range(4)}
        assert _wait_for(lambda: pool.stats()["parked"] == 2)
        assert pool.worker_pids() == []
        # Nothing is left armed while every worker is parked: no timer spins.
        assert _idle_checks(pool) == 0
        recycled = events.of(WORKER_RECYCLE)
        assert {md["reason"] for _, md in recycled} == {"idle_timeout"}
        assert not any(md["replaced"] for _, md in recycled)
        again = pool.submit(tasks.pid).result(timeout=30)
        assert again not in first
        assert pool.map(tasks.nap, [0.01] * 4) is not None
        _assert_no_crash(pool, events)


def test_parked_workers_count_as_started() -> None:
    """A worker parked before its siblings are ready must not hold up ``Pool(...)``."""
    with snakepit.Pool(workers=2, idle_timeout=0.05) as pool:
        assert _wait_for(lambda: pool.stats()["parked"] == 2)
        waiter = threading.Thread(
            target=_startup.wait_started, args=(pool._supervisor, 60.0), daemon=True
        )
        waiter.start()
        waiter.join(30.0)
        assert not waiter.is_alive()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pool_of_parked_workers_shut_down_without_waiting_ends_its_threads(
    workers: int,
) -> None:
    before = set(threading.enumerate())
    pool = snakepit.Pool(workers=workers, idle_timeout=0.05, preload=[])
    assert _wait_for(lambda: pool.stats()["parked"] == workers)
    pool.shutdown(wait=False)
    # No worker is left to exit and stop the pid watcher on its way out.
    assert _wait_for(
        lambda: (
            [t for t in threading.enumerate() if t not in before and t.name != "snakepit-telemetry"]
            == []
        )
    )


def test_idle_check_is_one_timer_however_many_calls() -> None:
    with snakepit.Pool(workers=2, idle_timeout=30.0) as pool:
        for _ in range(200):
            pool.call(tasks.pid)
        assert _idle_checks(pool) == 1


def test_a_session_call_wakes_its_parked_worker() -> None:
    with snakepit.Pool(workers=2, idle_timeout=0.2) as pool, _abandon_on_failure(pool):
        session = pool.options(session="s")
        first = session.call(tasks.pid)
        assert _wait_for(lambda: pool.stats()["parked"] == 2)
        # The parked worker held the session's state: the pool says it is gone,
        # once, then the session starts afresh on the woken worker.
        with pytest.raises(SessionLostError):
            session.submit(tasks.pid).result(timeout=30)
        assert session.submit(tasks.pid).result(timeout=30) != first
        assert pool.stats()["crashes"] == 0


# ----------------------------------------------------------------- cwd


@pytest.mark.parametrize("preload", ["auto", None], ids=["forked", "fresh"])
def test_workers_run_in_cwd(tmp_path: Path, preload: str | None) -> None:
    with snakepit.Pool(workers=1, cwd=tmp_path, preload=preload) as pool:
        assert pool.call(tasks.cwd) == str(tmp_path)
        # Functions from the caller's own directory still import.
        assert pool.call(tasks.pid) != os.getpid()
    assert os.getcwd() != str(tmp_path)


def test_missing_cwd_raises_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory"):
        snakepit.Pool(workers=1, cwd=tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        snakepit.Pool(workers=1, cwd=tmp_path / "file")


# -------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1000, 1000),
        ("2GiB", 2 << 30),
        ("2G", 2 << 30),
        ("512MB", 512 * 10**6),
        ("1.5 GiB", 3 << 29),
        ("64k", 64 << 10),
        ("100", 100),
        (None, None),
    ],
)
def test_sizes(value: int | str | None, expected: int | None) -> None:
    assert parse_bytes(value, "max_memory_per_worker") == expected


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_tasks_per_child": 0}, ValueError),
        ({"max_tasks_per_child": "3"}, TypeError),
        ({"max_tasks_per_child": True}, TypeError),
        ({"max_memory_per_worker": "lots"}, ValueError),
        ({"max_memory_per_worker": 0}, ValueError),
        ({"memory_limit_per_worker": 2.5}, TypeError),
        ({"memory_limit_per_worker": "-1GiB"}, ValueError),
        ({"idle_timeout": 0}, ValueError),
        ({"idle_timeout": float("nan")}, ValueError),
        ({"idle_timeout": "1"}, TypeError),
    ],
)
def test_bad_options_raise_at_construction(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        snakepit.Pool(workers=1, **options)


def test_no_option_no_recycler() -> None:
    assert not RecyclePolicy().recycles
    with snakepit.Pool(workers=1) as pool:
        assert pool._supervisor.recycler is None


# ------------------------------------------------------------ async with


def test_async_with_runs_calls_and_shuts_down_off_the_loop() -> None:
    async def main() -> tuple[int, int, snakepit.Pool]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        async with snakepit.Pool(workers=1) as pool:
            assert await pool.acall(tasks.pid) != os.getpid()
            pool.submit(tasks.nap, 0.5)  # shutdown waits for it
            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0)
            before = ticks
        during = ticks - before
        ticker.cancel()
        return before, during, pool

    _, during, pool = asyncio.run(main())
    # The loop kept running while the block's exit waited for the call.
    assert during >= 5
    with pytest.raises(PoolClosedError):
        pool.submit(tasks.pid)
