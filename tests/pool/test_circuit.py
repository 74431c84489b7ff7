"""Tests for circuit breakers; time is a fake clock, nothing sleeps."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from snakepit import telemetry
from snakepit.errors import CircuitOpenError
from snakepit.pool._circuit import CircuitBreaker, CircuitBreakerRegistry, CircuitState

from ._observe import new_tag, observing


@pytest.fixture(scope="module", autouse=True)
def _observe_transitions() -> Iterator[None]:
    with observing():
        yield


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Transitions = list[tuple[str, CircuitState, CircuitState]]


def _breaker(clock: FakeClock, **kwargs: int | float) -> tuple[CircuitBreaker, Transitions]:
    tag, seen, _ = new_tag()
    config: dict[str, int | float] = {
        "failure_threshold": 3,
        "success_threshold": 2,
        "open_duration": 10.0,
    }
    config.update(kwargs)
    breaker = CircuitBreaker(
        "test",
        failure_threshold=int(config["failure_threshold"]),
        success_threshold=int(config["success_threshold"]),
        open_duration=float(config["open_duration"]),
        half_open_max_probes=int(config.get("half_open_max_probes", 1)),
        clock=clock,
        pool=tag,
    )
    return breaker, seen


def _trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.acquire()
        breaker.record_failure()


def test_starts_closed_and_counts_consecutive_failures() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.failure_count == 2
    breaker.record_success()  # a success breaks the run
    assert breaker.failure_count == 0
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert seen == []


def test_opens_at_threshold_and_refuses_with_retry_after() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    _trip(breaker)
    assert breaker.state is CircuitState.OPEN
    assert seen == [("test", CircuitState.CLOSED, CircuitState.OPEN)]
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.circuit == "test"
    assert info.value.retry_after == pytest.approx(6.0)
    assert breaker.allow() is False
    assert breaker.open_count == 1


def test_half_open_after_duration_lazily() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    _trip(breaker)
    clock.advance(9.999)
    assert breaker.state is CircuitState.OPEN
    clock.advance(0.001)
    assert seen[-1] == ("test", CircuitState.CLOSED, CircuitState.OPEN)  # nothing looked yet
    assert breaker.state is CircuitState.HALF_OPEN
    assert seen[-1] == ("test", CircuitState.OPEN, CircuitState.HALF_OPEN)


def test_half_open_probe_limit_and_release() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock, half_open_max_probes=2)
    _trip(breaker)
    clock.advance(10.0)
    breaker.acquire()
    breaker.acquire()
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retry_after is None
    breaker.release()
    breaker.acquire()  # the released slot is usable again


def test_half_open_successes_close() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    _trip(breaker)
    clock.advance(10.0)
    breaker.acquire()
    breaker.record_success()
    assert breaker.state is CircuitState.HALF_OPEN  # success_threshold is 2
    breaker.acquire()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert [(o, n) for _, o, n in seen] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert breaker.failure_count == 0


def test_half_open_failure_reopens_with_fresh_timer() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    _trip(breaker)
    clock.advance(15.0)
    breaker.acquire()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert seen[-1][1:] == (CircuitState.HALF_OPEN, CircuitState.OPEN)
    assert breaker.retry_after() == pytest.approx(10.0)
    assert breaker.open_count == 2


def test_late_results_while_open_are_ignored() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    _trip(breaker)
    clock.advance(5.0)
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after() == pytest.approx(5.0)


def test_reset_closes() -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)
    _trip(breaker)
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.open_count == 0
    assert seen[-1][1:] == (CircuitState.OPEN, CircuitState.CLOSED)
    breaker.acquire()


def test_raising_event_handler_is_logged_and_harmless(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker, seen = _breaker(clock)

    def bad(*_: object) -> None:
        raise RuntimeError("telemetry down")

    telemetry.attach("tests-bad-circuit-handler", ("snakepit", "circuit", "open"), bad)
    try:
        with caplog.at_level(logging.ERROR, logger="snakepit.telemetry._bus"):
            _trip(breaker)
        assert breaker.state is CircuitState.OPEN
        assert len(seen) == 1  # the healthy handler still ran
        assert any("telemetry down" in (r.exc_text or "") for r in caplog.records)
    finally:
        telemetry.detach("tests-bad-circuit-handler")
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"success_threshold": 0},
        {"open_duration": -1.0},
        {"open_duration": float("nan")},
        {"half_open_max_probes": 0},
    ],
)
def test_invalid_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CircuitBreaker("bad", **kwargs)  # type: ignore[arg-type]


def test_snapshot_is_json_serialisable() -> None:
    clock = FakeClock()
    breaker, _ = _breaker(clock)
    _trip(breaker)
    snap = json.loads(json.dumps(breaker.snapshot()))
    assert snap["state"] == "open"
    assert snap["retry_after"] == pytest.approx(10.0)


def test_concurrent_failures_are_not_lost() -> None:
    threads, per_thread = 8, 500
    clock = FakeClock()
    tag, seen, _ = new_tag()
    breaker = CircuitBreaker("race", failure_threshold=threads * per_thread, clock=clock, pool=tag)
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            breaker.record_failure()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    # Exactly threshold failures: open only if no increment was lost, and once.
    assert breaker.state is CircuitState.OPEN
    assert seen == [("race", CircuitState.CLOSED, CircuitState.OPEN)]


def test_concurrent_probes_respect_limit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "probes", failure_threshold=1, open_duration=1.0, half_open_max_probes=3, clock=clock
    )
    breaker.record_failure()
    clock.advance(1.0)
    threads = 16
    barrier = threading.Barrier(threads)
    admitted: list[bool] = []
    lock = threading.Lock()

    def probe() -> None:
        barrier.wait()
        ok = breaker.allow()
        with lock:
            admitted.append(ok)

    pool = [threading.Thread(target=probe) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert admitted.count(True) == 3
    assert len(admitted) == threads


# ------------------------------------------------------------------ registry


def test_registry_isolates_a_failing_device() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(failure_threshold=3, open_duration=5.0, clock=clock)
    for _ in range(3):
        registry.check("cuda:0")
        registry.record("cuda:0", ok=False)
        registry.check("cuda:1")
        registry.record("cuda:1", ok=True)  # keeps the global run of failures broken
    with pytest.raises(CircuitOpenError) as info:
        registry.check("cuda:0")
    assert info.value.circuit == "device:cuda:0"
    registry.check("cuda:1")
    registry.check(None)
    assert registry.global_breaker.state is CircuitState.CLOSED
    assert registry.device("cuda:0") is registry.device("cuda:0")
    assert set(registry.breakers()) == {"global", "device:cuda:0", "device:cuda:1"}


def test_registry_global_circuit_stops_everything() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(failure_threshold=2, clock=clock)
    registry.record("cuda:0", ok=False)
    registry.record("cuda:1", ok=False)
    with pytest.raises(CircuitOpenError) as info:
        registry.check("cuda:2")
    assert info.value.circuit == "global"


def test_registry_returns_global_probe_when_device_refuses() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(failure_threshold=1, open_duration=5.0, clock=clock)
    registry.record("cuda:0", ok=False)  # opens global and cuda:0
    clock.advance(5.0)
    registry.device("cuda:0").acquire()  # take cuda:0's only probe
    with pytest.raises(CircuitOpenError) as info:
        registry.check("cuda:0")
    assert info.value.circuit == "device:cuda:0"
    registry.check("cuda:1")  # would fail if the global probe had leaked


def test_registry_events_cover_breakers_created_later() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(failure_threshold=1, clock=clock)
    tag, seen, _ = new_tag()
    registry.adopt(tag)
    registry.adopt("a-second-pool")  # the first pool keeps the tag
    registry.record("mps", ok=False)
    assert ("device:mps", CircuitState.CLOSED, CircuitState.OPEN) in seen
    assert ("global", CircuitState.CLOSED, CircuitState.OPEN) in seen
    registry.reset()
    assert all(b.state is CircuitState.CLOSED for b in registry.breakers().values())
    snap = json.loads(json.dumps(registry.snapshot()))
    assert snap["device:mps"]["state"] == "closed"
