"""Exact event sequences the pool emits (SPEC §4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import CircuitOpenError, PythonError, WorkerCrashedError
from snakepit.pool import CircuitBreakerRegistry, RetryPolicy

from ..pool import _tasks
from . import _worker_tasks

Record = tuple[tuple[str, ...], dict[str, float], dict[str, Any]]


class Collector:
    """Collects every catalogued event (thread-safe: readers emit too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[Record] = []

    def __call__(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        with self._lock:
            self.records.append((event, dict(measurements), dict(metadata)))

    def names(self, *, skip: Callable[[Record], bool] = lambda r: False) -> list[str]:
        with self._lock:
            return [".".join(r[0][1:]) for r in self.records if not skip(r)]

    def of(self, name: str) -> list[Record]:
        with self._lock:
            return [r for r in self.records if ".".join(r[0][1:]) == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.of(name)) < count:
            assert time.monotonic() < deadline, f"no {name} event; saw {self.names()}"
            time.sleep(0.01)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()


@pytest.fixture
def events() -> Iterator[Collector]:
    collector = Collector()
    telemetry.attach_many("test-pool-events", telemetry.ALL_EVENTS, collector)
    try:
        yield collector
    finally:
        telemetry.detach("test-pool-events")


def _calls_only(record: Record) -> bool:
    # Worker lifecycle and pool size events are asserted separately.
    return record[0][1] in ("worker", "memory") or record[0][1:] == ("pool", "size")


def test_successful_call_sequence_and_timings(events: Collector) -> None:
    with snakepit.Pool(workers=1) as pool:
        events.clear()
        assert pool.call(_tasks.add, 2, 3) == 5
        assert events.names(skip=_calls_only) == [
            "call.start",
            "serialize.stop",
            "pool.checkout",
            "pool.checkin",
            "serialize.stop",
            "call.stop",
        ]
        (_, stop, meta) = events.of("call.stop")[0]
        assert meta["function"] == "tests.pool._tasks:add"
        assert meta["worker_id"] == 0
        assert meta["pool"] == pool.name
        for key in ("queue_time", "serialize_time", "python_time", "deserialize_time"):
            assert 0 <= stop[key] <= stop["duration"], key
        assert stop["attempts"] == 1
        directions = [m["direction"] for _, _, m in events.of("serialize.stop")]
        assert directions == ["encode", "decode"]
        call_ids = {m["call_id"] for e, _, m in events.records if "call_id" in m}
        assert len(call_ids) == 1


def test_python_time_is_measured_in_the_worker(events: Collector) -> None:
    with snakepit.Pool(workers=1) as pool:
        events.clear()
        pool.call(time.sleep, 0.05)
        (_, stop, _) = events.of("call.stop")[0]
        assert 0.05 <= stop["python_time"] < stop["duration"]


def test_failing_call_sequence(events: Collector) -> None:
    with snakepit.Pool(workers=1) as pool:
        events.clear()
        with pytest.raises(PythonError):
            pool.call(_worker_tasks.raise_key_error)
        assert events.names(skip=_calls_only) == [
            "call.start",
            "serialize.stop",
            "pool.checkout",
            "pool.checkin",
            "serialize.stop",
            "call.exception",
            "error",
        ]
        (_, _, meta) = events.of("call.exception")[0]
        assert meta["kind"] == "PythonError"
        assert meta["python_type"] == "KeyError"
        assert isinstance(meta["exception"], KeyError)
        assert "no such feature" in meta["reason"]


def test_worker_crash_and_restart_sequence(events: Collector) -> None:
    with snakepit.Pool(workers=1) as pool:
        events.clear()
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        events.wait_for("worker.start")
        # Memory events come from the garbage collector, at any moment.
        assert events.names(skip=lambda r: r[0][1] == "memory") == [
            "call.start",
            "serialize.stop",
            "pool.checkout",
            "worker.crash",
            "pool.size",
            "call.exception",
            "error",
            "worker.restart",
            "worker.start",
            "pool.size",
        ]
        (_, _, crash) = events.of("worker.crash")[0]
        assert crash["exit_kind"] == "segfault"
        assert crash["signal"] == 11
        assert crash["worker_id"] == 0
        assert crash["call_id"] is not None
        (_, _, start) = events.of("worker.start")[0]
        assert start["restart"] is True
        assert start["pid"] != crash["pid"]
        (_, restart, _) = events.of("worker.restart")[0]
        assert restart["delay"] == 0.0
        sizes = [m for _, m, _ in events.of("pool.size")]
        assert sizes[0]["idle"] == 0
        assert sizes[-1]["idle"] == 1


def test_circuit_opens_and_closes(events: Collector) -> None:
    circuits = CircuitBreakerRegistry(
        failure_threshold=1, success_threshold=1, open_duration=0.3, half_open_max_probes=1
    )
    with snakepit.Pool(workers=2, circuit_breaker=circuits, worker_max_crashes=100) as pool:
        events.clear()
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        with pytest.raises(CircuitOpenError):
            pool.call(_tasks.add, 1, 1)
        time.sleep(0.4)
        assert pool.call(_tasks.add, 1, 1) == 2
    circuit = [
        (name[-1], meta["circuit"], meta["previous"])
        for name, _, meta in events.records
        if name[1] == "circuit"
    ]
    assert circuit == [
        ("open", "global", "closed"),
        ("half_open", "global", "open"),
        ("close", "global", "half_open"),
    ]
    # The fast failure never reached a worker.
    rejected = [m for _, _, m in events.of("call.exception") if m["kind"] == "CircuitOpenError"]
    assert len(rejected) == 1
    assert rejected[0]["worker_id"] is None


def test_retry_sequence(events: Collector, tmp_path: Path) -> None:
    retry = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)
    with snakepit.Pool(workers=2, retry=retry) as pool:
        events.clear()
        marker = str(tmp_path / "marker")
        assert pool.options(idempotent=True).call(_tasks.flaky, marker) == "recovered"
        names = events.names(skip=_calls_only)
        assert names == [
            "call.start",
            "serialize.stop",
            "pool.checkout",
            "retry.attempt",
            "pool.checkout",
            "pool.checkin",
            "serialize.stop",
            "call.stop",
        ]
        (_, attempt, meta) = events.of("retry.attempt")[0]
        assert attempt["attempt"] == 2
        assert meta["kind"] == "WorkerCrashedError"
        assert events.of("call.stop")[0][1]["attempts"] == 2


def test_events_raised_in_a_worker_reach_the_supervisor(events: Collector) -> None:
    with snakepit.Pool(workers=1) as pool:
        worker_pid = pool.call(_tasks.pid)
        events.clear()
        assert pool.call(_worker_tasks.generate, 64) == 64
        (record,) = events.of("ml.inference")
        _, measurements, metadata = record
        assert measurements["tokens"] == 64
        assert measurements["tokens_per_second"] > 0
        assert metadata["model"] == "tiny-llm"
        assert metadata["worker_id"] == 0
        assert metadata["worker_pid"] == worker_pid
        # Forwarded before the reply: it precedes the call's stop event.
        names = events.names(skip=_calls_only)
        assert names.index("ml.inference") < names.index("call.stop")


def test_no_handler_no_events_and_calls_still_work() -> None:
    # Only the default failure logger is attached, and to no event of a call.
    attached = telemetry.list_handlers(("snakepit",))
    assert [info.handler_id for info in attached] == ["snakepit-failures"]
    assert not telemetry.list_handlers(("snakepit", "call"))
    assert not telemetry.enabled(("snakepit", "call", "stop"))
    with snakepit.Pool(workers=1) as pool:
        assert pool.call(_tasks.add, 1, 2) == 3
