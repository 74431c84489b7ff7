"""Every Ray exception becomes a snakepit error (fake classes: no ray needed)."""

from __future__ import annotations

from typing import Any

import pytest

from snakepit.backends import classify_ray_error
from snakepit.errors import (
    CallCancelledError,
    ExitKind,
    SerializationError,
    SharedMemoryExhaustedError,
    WorkerCrashedError,
    WorkerStartError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool._exits import classify_lost
from snakepit.pool._retry import RetryPolicy


def fake(name: str, base: type[BaseException] = Exception, **attrs: Any) -> BaseException:
    """An instance of a class named like Ray's, as Ray's hierarchy nests them."""
    cls = type(name, (base,), {})
    exc = cls(attrs.pop("text", f"{name} happened"))
    for key, value in attrs.items():
        setattr(exc, key, value)
    return exc


RayError = type("RayError", (Exception,), {})
RayActorError = type("RayActorError", (RayError,), {})


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("ActorDiedError", RayActorError),
        ("ActorUnavailableError", RayActorError),
        ("RayActorError", RayError),
        ("WorkerCrashedError", RayError),
        ("NodeDiedError", RayError),
        ("LocalRayletDiedError", RayError),
        ("OwnerDiedError", RayError),
        ("ObjectLostError", RayError),
    ],
)
def test_host_losses_are_kind_lost(name: str, base: type[BaseException]) -> None:
    exc = fake(name, base)
    error = classify_ray_error(exc, worker_id=3, node_id="n1")
    assert type(error) is WorkerCrashedError
    assert error.exit_kind == ExitKind.lost
    assert (error.signal, error.exit_code, error.worker_id) == (None, None, 3)
    assert error.__cause__ is exc
    assert "node n1" in (error.__notes__ or [])
    assert RetryPolicy().should_retry(error, 1, idempotent=True)
    assert not RetryPolicy().should_retry(error, 1, idempotent=False)


def test_memory_monitor_kill_is_kind_killed_and_preemption_is_noted() -> None:
    oom = fake("ActorDiedError", RayActorError, text="Task was killed due to memory pressure")
    error = classify_ray_error(oom)
    assert isinstance(error, WorkerCrashedError)
    assert error.exit_kind == "killed"
    assert "memory monitor" in str(error)
    drained = classify_ray_error(fake("ActorDiedError", RayActorError, preempted=True))
    assert any("preempted" in note for note in drained.__notes__)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ObjectStoreFullError", SharedMemoryExhaustedError),
        ("OutOfDiskError", SharedMemoryExhaustedError),
        ("TaskCancelledError", CallCancelledError),
        ("RuntimeEnvSetupError", WorkerStartError),
        ("TaskUnschedulableError", WorkerUnavailableError),
        ("ActorUnschedulableError", WorkerUnavailableError),
        ("PlacementGroupSchedulingError", WorkerUnavailableError),
        ("RaySystemError", WorkerUnavailableError),
        ("GetTimeoutError", WorkerUnavailableError),
        ("RaySerializationError", SerializationError),
        ("SomethingNewInRay3", WorkerUnavailableError),
    ],
)
def test_other_ray_errors_map_to_the_hierarchy(name: str, expected: type[BaseException]) -> None:
    exc = fake(name, RayError)
    error = classify_ray_error(exc, node_id="n2")
    assert type(error) is expected
    assert error.__cause__ is exc


def test_snakepit_errors_pass_through() -> None:
    error = WorkerTimeoutError(timeout=1.0)
    assert classify_ray_error(error) is error


def test_lost_is_classified_in_the_exits_module() -> None:
    info = classify_lost("ActorDiedError")
    assert (info.kind, info.signal, info.exit_code) == (ExitKind.lost, None, None)
    assert info.crashed
    assert classify_lost(memory_pressure=True).kind is ExitKind.killed


def test_real_ray_exceptions_when_ray_is_installed() -> None:
    exceptions = pytest.importorskip("ray.exceptions", reason="ray is not installed")
    died = classify_ray_error(exceptions.ActorDiedError())
    assert isinstance(died, WorkerCrashedError)
    assert died.exit_kind == "lost"
    unavailable = classify_ray_error(exceptions.ActorUnavailableError("gone", b"\0" * 16))
    assert isinstance(unavailable, WorkerCrashedError)
    assert unavailable.exit_kind == "lost"
    assert isinstance(classify_ray_error(exceptions.GetTimeoutError()), WorkerUnavailableError)
    full = classify_ray_error(exceptions.ObjectStoreFullError())
    assert isinstance(full, SharedMemoryExhaustedError)
    cancelled = classify_ray_error(exceptions.TaskCancelledError())
    assert isinstance(cancelled, CallCancelledError)
