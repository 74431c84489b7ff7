"""Circuit breaker, retry policy and health wired through the executor path."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit.errors import CircuitOpenError, WorkerCrashedError
from snakepit.hardware import _detect as detect_module
from snakepit.hardware import detect
from snakepit.pool import CircuitBreakerRegistry, CircuitState, RetryPolicy
from tests.hardware._doubles import NvmlDouble, h100, machine

from . import _tasks
from ._observe import new_tag, observing


def test_circuit_opens_half_opens_and_closes() -> None:
    circuits = CircuitBreakerRegistry(
        failure_threshold=3, success_threshold=2, open_duration=0.5, half_open_max_probes=1
    )
    tag, transitions, _ = new_tag()
    circuits.adopt(tag)  # before the pool, which would tag the events with its own name
    with (
        observing(),
        snakepit.Pool(workers=2, circuit_breaker=circuits, worker_max_crashes=100) as pool,
    ):
        for _ in range(3):
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
        assert circuits.global_breaker.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError) as info:
            pool.call(_tasks.add, 1, 1)
        assert info.value.retry_after is not None
        time.sleep(0.6)
        assert circuits.global_breaker.state is CircuitState.HALF_OPEN
        assert pool.call(_tasks.add, 1, 1) == 2
        assert pool.call(_tasks.add, 2, 2) == 4
        assert circuits.global_breaker.state is CircuitState.CLOSED
    names = [(old, new) for name, old, new in transitions if name == "global"]
    assert names == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_per_device_circuits_are_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pool naming cuda:0 needs a GPU (validated at construction): pretend one.
    gpu = h100("GPU-0d1e2f30-0000-4000-8000-000000000000")
    monkeypatch.setattr(
        detect_module, "_cache", detect(machine(load_nvml=lambda: NvmlDouble(gpus=[gpu])))
    )
    circuits = CircuitBreakerRegistry(failure_threshold=2, open_duration=60)
    # The global circuit must not trip first: give it a higher threshold.
    circuits.global_breaker.failure_threshold = 100  # type: ignore[attr-defined]
    with snakepit.Pool(
        workers=2, device=["cpu", "cuda:0"], circuit_breaker=circuits, worker_max_crashes=100
    ) as pool:
        for _ in range(2):
            with pytest.raises(WorkerCrashedError):
                pool.options(device="cuda:0").call(_tasks.segfault)
        with pytest.raises(CircuitOpenError):
            pool.options(device="cuda:0").call(_tasks.add, 1, 1)
        assert pool.options(device="cpu").call(_tasks.add, 1, 1) == 2
        assert pool.options(device="cpu").call(_tasks.env, "CUDA_VISIBLE_DEVICES") == ""


def test_idempotent_calls_are_retried_after_a_crash(tmp_path: Path) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, jitter=0.0)
    with snakepit.Pool(workers=1, retry=policy) as pool:
        assert pool.options(idempotent=True).call(_tasks.flaky, str(tmp_path / "a")) == "recovered"
        assert pool.stats()["retries"] == 1
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.flaky, str(tmp_path / "b"))  # not idempotent: no retry
        assert pool.stats()["retries"] == 1


def test_a_retry_is_a_new_attempt_not_yet_dispatched(tmp_path: Path) -> None:
    # A retry that has to wait must look undispatched: a parked worker is
    # woken for it and its caller waits for its turn (white-box).
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=0.0)
    with snakepit.Pool(workers=1, retry=policy) as pool:
        supervisor = pool._supervisor
        seen: list[tuple[int, float]] = []
        original = supervisor.start_attempt

        def start_attempt(call: Any) -> None:
            seen.append((call.attempt, call.dispatched))
            original(call)

        supervisor.start_attempt = start_attempt  # type: ignore[method-assign]
        assert pool.options(idempotent=True).call(_tasks.flaky, str(tmp_path / "a")) == "recovered"
        assert seen == [(1, 0.0), (2, 0.0)]


def test_health_reports_crashes() -> None:
    with snakepit.Pool(workers=1, worker_max_crashes=100) as pool:
        for _ in range(3):
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
        health = pool.health()
        assert health["status"] != "healthy"
        assert pool.call(_tasks.add, 1, 1) == 2
