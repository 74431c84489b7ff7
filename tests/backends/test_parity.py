"""The same fault table against ``backend="local"`` and ``backend="ray"``.

Each fault runs on a local pool and on a Ray pool in the same test; the
error's type and fields (exit_kind, signal, exit_code, and the fields of
timeouts and serialization errors) must be identical, and the next call on
each pool must succeed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import snakepit
from snakepit.backends import RayBackend
from snakepit.errors import SnakepitError, WorkerStartError

from ..pool import _tasks
from . import _tasks as _backend_tasks

#: Fractional CPUs: a module's Ray pool and a test's own fit in the 2-CPU Ray.
BACKEND = RayBackend(num_cpus_per_worker=0.25)


@dataclass(frozen=True)
class Fault:
    name: str
    task: Callable[..., Any]
    args: tuple[Any, ...] = ()
    timeout: float | None = None
    expected: tuple[Any, ...] = ()


def signature(error: BaseException) -> tuple[Any, ...]:
    """What must match across backends: the type and its structured fields."""
    fields = ("exit_kind", "signal", "exit_code", "timeout", "direction", "python_type")
    return (type(error).__name__, *(getattr(error, name, None) for name in fields))


FAULTS = [
    Fault("segfault", _tasks.segfault, expected=("WorkerCrashedError", "segfault", signal.SIGSEGV)),
    Fault("abort", _tasks.abort, expected=("WorkerCrashedError", "abort", signal.SIGABRT)),
    Fault("os._exit(3)", _tasks.exit_3, expected=("WorkerCrashedError", "exit", None, 3)),
    Fault(
        "SIGKILL self",
        _backend_tasks.kill_self,
        expected=("WorkerCrashedError", "killed", signal.SIGKILL),
    ),
    Fault("memory limit", _tasks.exceed_memory_limit, expected=("OutOfMemoryError[MemoryError]",)),
    Fault("timeout", _tasks.spin_forever, timeout=0.5, expected=("WorkerTimeoutError",)),
    Fault(
        "hung C call",
        _tasks.c_call_forever,
        args=(True,),
        timeout=0.5,
        expected=("WorkerTimeoutError",),
    ),
    Fault("unpicklable result", _tasks.unpicklable_result, expected=("SerializationError",)),
]


@pytest.fixture(scope="module")
def local_pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, terminate_grace=0.3) as pool:
        yield pool


@pytest.fixture(scope="module")
def ray_pool(ray_session: Any) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, terminate_grace=0.3, backend=BACKEND) as pool:
        yield pool


def _fail(pool: snakepit.Pool, fault: Fault) -> BaseException:
    view = pool.options(timeout=fault.timeout) if fault.timeout else pool
    with pytest.raises(SnakepitError) as info:
        view.call(fault.task, *fault.args)
    return info.value


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_table_is_identical_on_both_backends(
    local_pool: snakepit.Pool, ray_pool: snakepit.Pool, fault: Fault
) -> None:
    local = _fail(local_pool, fault)
    remote = _fail(ray_pool, fault)
    assert signature(remote) == signature(local)
    assert signature(local)[: len(fault.expected)] == fault.expected
    assert type(remote) is type(local)  # the same class, catchable the same way
    if fault.timeout is not None:
        # Where the worker was stuck, when it could say (not in a hung C call).
        assert (remote.remote_traceback is None) == (local.remote_traceback is None)
    assert local_pool.call(_tasks.add, 20, 22) == 42
    assert ray_pool.call(_tasks.add, 20, 22) == 42


@pytest.mark.parametrize("backend", ["local", BACKEND], ids=["local", "ray"])
def test_failing_initializer_fails_construction_alike(backend: object, request: Any) -> None:
    if backend != "local":
        request.getfixturevalue("ray_session")
    with pytest.raises(WorkerStartError) as info:
        snakepit.Pool(workers=1, initializer=_tasks.always_raise, backend=backend)
    error = info.value
    assert error.exit_kind == "python_error"
    assert isinstance(error.__cause__, ValueError)
    assert "initializer refuses" in str(error.__cause__)


def _events_of_one_call(pool: snakepit.Pool, task: Callable[..., Any], *args: Any) -> list[Any]:
    from snakepit import telemetry
    from snakepit.telemetry import ALL_EVENTS

    seen: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    wanted = [e for e in ALL_EVENTS if e[1] in ("call", "pool", "worker", "retry")]
    telemetry.attach_many("parity", wanted, lambda e, m, meta, c: seen.append((e, dict(meta))))
    try:
        pool.call(_tasks.add, 0, 0)  # the host learns that the driver listens
        seen.clear()
        with pytest.raises(SnakepitError):
            pool.call(task, *args)
        assert pool.call(_tasks.add, 1, 1) == 2
        time.sleep(0.5)  # a restart's events arrive with the next reply or poll
        pool.call(_tasks.add, 1, 1)
    finally:
        telemetry.detach("parity")
    return seen


def test_telemetry_event_sequences_match(
    local_pool: snakepit.Pool, ray_pool: snakepit.Pool
) -> None:
    local = _events_of_one_call(local_pool, _tasks.segfault)
    remote = _events_of_one_call(ray_pool, _tasks.segfault)

    # Call-scoped events in the same order; worker lifecycle events (which
    # threads emit as they happen, the pool's size with them: a restarted
    # worker's comes whenever it is ready) the same ones.
    def call_scoped(event: tuple[str, ...]) -> bool:
        return event[1] == "call" or (event[1] == "pool" and event[2] != "size")

    def calls(seen: list[Any]) -> list[Any]:
        return [e for e, _ in seen if call_scoped(e)]

    def lifecycle(seen: list[Any]) -> list[Any]:
        return sorted(e for e, _ in seen if not call_scoped(e))

    assert calls(remote) == calls(local)
    assert lifecycle(remote) == lifecycle(local)
    assert ("snakepit", "worker", "crash") in [e for e, _ in local]
    assert all(meta["node_id"] and meta["backend"] == "ray" for _, meta in remote)
