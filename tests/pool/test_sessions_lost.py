"""Sessions that say when they are lost: SessionLostError once, or session_initializer.

Real workers throughout (docs/crash-recovery.md, "Lost sessions").
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import (
    PythonError,
    SessionLostError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
)
from snakepit.pool import RetryPolicy
from snakepit.telemetry._events import SESSION_LOST

from . import _session_tasks, _tasks


@contextmanager
def session_events() -> Iterator[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Collect ``snakepit.session.lost`` events (measurements, metadata) in the block."""
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    lock = threading.Lock()

    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        with lock:
            seen.append((dict(measurements), dict(metadata)))

    handler_id = f"tests-session-lost-{id(seen)}"
    telemetry.attach(handler_id, SESSION_LOST, handler)
    try:
        yield seen
    finally:
        telemetry.detach(handler_id)


def _wait_for_crashes(pool: snakepit.Pool, count: int) -> None:
    deadline = time.monotonic() + 30
    while pool.stats()["crashes"] < count:
        assert time.monotonic() < deadline, "the pool never saw the worker die"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, worker_max_crashes=100) as shared:
        yield shared


def test_a_crash_yields_session_lost_error_once(pool: snakepit.Pool) -> None:
    model = pool.options(session="crash-once")
    worker_pid = model.call(_session_tasks.remember, "crash-once", 42)
    assert model.call(_session_tasks.recall, "crash-once") == 42
    with pytest.raises(WorkerCrashedError):
        model.call(_tasks.segfault)  # the session's own call crashes its worker
    with pytest.raises(SessionLostError) as info:
        model.call(_session_tasks.recall, "crash-once")
    lost = info.value
    assert isinstance(lost, WorkerError)
    assert (lost.session, lost.exit_kind, lost.pid) == ("crash-once", "segfault", worker_pid)
    assert isinstance(lost.__cause__, WorkerCrashedError)
    assert lost.__cause__.exit_kind == "segfault"
    assert lost.worker_id == lost.__cause__.worker_id
    assert "crash-once" in str(lost)
    assert "session_initializer" in str(lost)
    # Once: later calls start a fresh session (on the new worker, without the state).
    assert model.call(_session_tasks.recall, "crash-once") == "<none>"
    assert model.call(_session_tasks.remember, "crash-once", 7) != worker_pid
    assert model.call(_session_tasks.recall, "crash-once") == 7


def test_a_worker_killed_while_idle_loses_its_session(pool: snakepit.Pool) -> None:
    model = pool.options(session="killed-idle")
    worker_pid = model.call(_session_tasks.remember, "killed-idle", "state")
    crashes = pool.stats()["crashes"]
    with session_events() as events:
        os.kill(worker_pid, signal.SIGKILL)
        _wait_for_crashes(pool, crashes + 1)
        with pytest.raises(SessionLostError) as info:
            model.call(_session_tasks.recall, "killed-idle")
    assert (info.value.exit_kind, info.value.pid) == ("killed", worker_pid)
    assert model.call(_session_tasks.recall, "killed-idle") == "<none>"
    mine = [(m, md) for m, md in events if md["session"] == "killed-idle"]
    assert len(mine) == 1
    measurements, metadata = mine[0]
    assert metadata["pid"] == worker_pid
    assert metadata["exit_kind"] == "killed"
    assert metadata["reinitialized"] is False
    assert metadata["pool"] == pool.name
    assert measurements["failed_calls"] == 0


def test_other_sessions_keep_their_state() -> None:
    with snakepit.Pool(workers=2) as pool:
        _neighbours(pool)


def _neighbours(pool: snakepit.Pool) -> None:
    first = pool.options(session="neighbour-a")
    second = pool.options(session="neighbour-b")
    pid_a = first.call(_session_tasks.remember, "neighbour-a", 1)
    pid_b = second.call(_session_tasks.remember, "neighbour-b", 2)
    assert pid_a != pid_b  # sessions spread over the two workers
    with pytest.raises(WorkerCrashedError):
        first.call(_tasks.segfault)
    assert second.call(_session_tasks.recall, "neighbour-b") == 2
    with pytest.raises(SessionLostError):
        first.call(_session_tasks.recall, "neighbour-a")


def test_calls_queued_for_the_session_fail_with_it(pool: snakepit.Pool, tmp_path: Path) -> None:
    model = pool.options(session="queued")
    model.call(_session_tasks.remember, "queued", "state")
    go = tmp_path / "go"
    crashing = model.submit(_session_tasks.crash_when, str(go))
    waiting = [model.submit(_session_tasks.recall, "queued") for _ in range(3)]
    go.touch()
    with pytest.raises(WorkerCrashedError):
        crashing.result(timeout=30)
    for future in waiting:
        error = future.exception(timeout=30)
        assert isinstance(error, SessionLostError)
        assert isinstance(error.__cause__, WorkerCrashedError)
    # They were told: the next call is a fresh session, not one more error.
    assert model.call(_session_tasks.recall, "queued") == "<none>"


def test_an_idempotent_retry_does_not_move_the_session_silently(tmp_path: Path) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, jitter=0.0)
    with snakepit.Pool(workers=1, retry=policy) as pool:
        model = pool.options(session="retried", idempotent=True)
        model.call(_session_tasks.remember, "retried", "state")
        marker = tmp_path / "crashed"
        with pytest.raises(SessionLostError) as info:
            # Without the session the retry would succeed, without the state.
            model.call(_session_tasks.flaky, str(marker), "retried")
        assert marker.exists()
        assert isinstance(info.value.__cause__, WorkerCrashedError)
        assert pool.stats()["retries"] == 1
        assert model.call(_session_tasks.recall, "retried") == "<none>"


def test_a_timeout_loses_the_session(pool: snakepit.Pool) -> None:
    model = pool.options(session="timed-out")
    model.call(_session_tasks.remember, "timed-out", "state")
    with pytest.raises(WorkerTimeoutError):
        model.options(timeout=0.2).call(_session_tasks.sleep, 30)
    with pytest.raises(SessionLostError) as info:
        model.call(_session_tasks.recall, "timed-out")
    assert info.value.exit_kind == "timeout"
    assert isinstance(info.value.__cause__, WorkerTimeoutError)


def test_a_worker_ended_on_request_loses_its_sessions(pool: snakepit.Pool) -> None:
    # What pool.cancel() (or recycling) calls when it ends a worker itself.
    model = pool.options(session="ended")
    worker_pid = model.call(_session_tasks.remember, "ended", "state")
    supervisor = pool._supervisor
    handle = next(h for h in supervisor.handles if h.pid == worker_pid)
    cause = WorkerCrashedError("ended by the test", exit_kind="killed", worker_id=handle.index)
    supervisor.sessions.lost(handle, cause)
    supervisor.sessions.lost(handle, cause)  # the same process again: nothing more
    with pytest.raises(SessionLostError) as info:
        model.call(_session_tasks.recall, "ended")
    assert info.value.__cause__ is cause
    assert info.value.pid == worker_pid
    assert model.call(_session_tasks.recall, "ended") == "state"  # this test's worker lives on


def test_session_initializer_rebuilds_a_lost_session(tmp_path: Path) -> None:
    go = tmp_path / "go"
    with (
        session_events() as events,
        snakepit.Pool(
            workers=1,
            session_initializer=_session_tasks.load_session,
            session_initargs=("init",),
        ) as pool,
    ):
        model = pool.options(session="model")
        first = model.call(_session_tasks.recall, "model")
        assert first.startswith("init:model:")
        assert model.call(_session_tasks.remember, "other-key", 1) == int(first.split(":")[2])
        assert model.call(_session_tasks.recall, "model") == first  # once per worker
        crashing = model.submit(_session_tasks.crash_when, str(go))
        waiting = model.submit(_session_tasks.recall, "model")
        go.touch()
        with pytest.raises(WorkerCrashedError):
            crashing.result(timeout=30)
        # No SessionLostError: the queued call and the next run on the new
        # worker, after the initializer rebuilt the session there.
        rebuilt = waiting.result(timeout=30)
        assert rebuilt.startswith("init:model:")
        assert rebuilt != first
        assert model.call(_session_tasks.recall, "model") == rebuilt
        assert pool.call(_session_tasks.recall, "plain") == "<none>"  # no session, no init
    assert [(m["failed_calls"], md["session"], md["reinitialized"]) for m, md in events] == [
        (0, "model", True)
    ]


def test_a_failing_session_initializer_fails_the_call() -> None:
    with snakepit.Pool(workers=1, session_initializer=_session_tasks.refuse_session) as pool:
        model = pool.options(session="missing")
        for _ in range(2):  # run again for the next call of the session
            with pytest.raises(LookupError) as info:
                model.call(_tasks.add, 1, 2)
            assert isinstance(info.value, PythonError)
            assert "no such model: missing" in str(info.value)
        assert pool.call(_tasks.add, 1, 2) == 3
        assert pool.stats()["crashes"] == 0


def test_session_initializer_by_name_rebuilds_for_an_idempotent_retry(tmp_path: Path) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0.0)
    with snakepit.Pool(
        workers=1, retry=policy, session_initializer="tests.pool._session_tasks:load_session"
    ) as pool:
        model = pool.options(session="retried", idempotent=True)
        first = model.call(_session_tasks.recall, "retried")
        # The retry runs on the new worker once the initializer rebuilt the session.
        rebuilt = model.call(_session_tasks.flaky, str(tmp_path / "crashed"), "retried")
        assert rebuilt.startswith("loaded:retried:")
        assert rebuilt != first
        assert pool.stats()["retries"] == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_lost_session_is_a_warning_record_by_default() -> None:
    logger = logging.getLogger("snakepit")
    records = _Records()
    logger.addHandler(records)
    try:
        with snakepit.Pool(workers=1) as pool:
            model = pool.options(session="logged")
            model.call(_session_tasks.remember, "logged", 1)
            with pytest.raises(WorkerCrashedError):
                model.call(_tasks.segfault)
    finally:
        logger.removeHandler(records)
    lost = [
        r.getMessage()
        for r in records.records
        if r.levelno == logging.WARNING and "session 'logged' lost" in r.getMessage()
    ]
    assert len(lost) == 1, [r.getMessage() for r in records.records]
    assert "segfault" in lost[0]
