"""``Pool(backend="ray")``: the local pool's API, sessions, retries, health and
telemetry, and what a lost host does (kind ``lost``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import telemetry
from snakepit.backends import RayBackend
from snakepit.errors import (
    CallCancelledError,
    CircuitOpenError,
    SessionLostError,
    WorkerCrashedError,
)
from snakepit.pool import CircuitBreakerRegistry

from ..pool import _tasks
from . import _tasks as _backend_tasks

BACKEND = RayBackend(num_cpus_per_worker=0.25, poll_interval=0.2)


@pytest.fixture(scope="module")
def pool(ray_session: Any) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, terminate_grace=0.3, backend=BACKEND) as pool:
        yield pool


def _wait_ready(pool: snakepit.Pool, hosts: int) -> None:
    deadline = time.monotonic() + 60
    while sum(h["state"] == "ready" for h in pool.hosts()) < hosts:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, pool.hosts()  # type: ignore[attr-defined]
        time.sleep(0.05)


def _kill_host_running(ray: Any, pool: snakepit.Pool, pid_file: Path) -> None:
    """Kill the host actor whose worker wrote ``pid_file`` (a call is running there)."""
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    worker = int(pid_file.read_text())
    for host in pool.hosts():  # type: ignore[attr-defined]
        actor = ray.get_actor(host["actor"])
        if worker in ray.get(actor.worker_pids.remote()):
            ray.kill(actor, no_restart=True)
            return
    raise AssertionError(f"no host runs worker {worker}")


def test_the_call_api_is_the_local_one(pool: snakepit.Pool) -> None:
    assert isinstance(pool, snakepit.Pool)
    assert pool.call(_tasks.add, 1, 2) == 3
    assert pool.submit(_tasks.add, 2, 3).result(timeout=30) == 5
    assert pool.call("tests.pool._tasks:add", 3, 4) == 7
    assert list(pool.map(_tasks.add, range(6), range(6))) == [0, 2, 4, 6, 8, 10]
    assert asyncio.run(pool.acall(_tasks.add, 4, 5)) == 9
    assert pool.options(timeout=10, idempotent=True).call(_tasks.add, 5, 6) == 11
    with pytest.raises(ValueError, match="initializer refuses"):  # user errors keep their type
        pool.call(_tasks.always_raise)
    stats = pool.stats()
    assert stats["size"] == 2
    assert stats["completed"] >= 7
    assert set(pool.health()["workers"]) == {0, 1}
    assert len(pool.worker_pids()) == 2
    assert all(node for node, _ in pool.workers())  # type: ignore[attr-defined]


def test_shared_memory_on_the_callers_node_is_shared(pool: snakepit.Pool) -> None:
    assert all(h["same_memory"] for h in pool.hosts())  # type: ignore[attr-defined]
    array = snakepit.zeros(1 << 16, "float64")
    pool.call(_tasks.fill, array, 3.0)  # the worker writes the caller's memory
    assert np.all(array == 3.0)
    big = np.arange(1 << 18, dtype=np.float64)
    assert pool.call(_tasks.total, big) == float(big.sum())
    result = pool.call(_tasks.shared_result, 1000)
    assert result.sum() == 499500.0
    assert snakepit.is_shared(result)


def test_sessions_stick_to_one_worker(pool: snakepit.Pool) -> None:
    view = pool.options(session="s1")
    pid = view.call(_tasks.remember, "k", 42)
    assert all(view.call(_tasks.pid) == pid for _ in range(4))
    assert view.call(_tasks.recall, "k") == 42


def test_a_lost_host_is_kind_lost_and_the_pool_carries_on(
    ray_session: Any, pool: snakepit.Pool, tmp_path: Path
) -> None:
    crashes: list[dict[str, Any]] = []
    telemetry.attach(
        "test-lost",
        ("snakepit", "worker", "crash"),
        lambda e, m, meta, c: crashes.append(dict(meta)),
    )
    try:
        pid_file = tmp_path / "pid"
        view = pool.options(session="doomed")
        view.call(_tasks.remember, "k", 1)
        future = view.submit(_backend_tasks.sleep_then, str(pid_file), 60, 1)
        _kill_host_running(ray_session, pool, pid_file)
        with pytest.raises(WorkerCrashedError) as info:
            future.result(timeout=60)
    finally:
        telemetry.detach("test-lost")
    error = info.value
    assert (error.exit_kind, error.signal, error.exit_code) == ("lost", None, None)
    assert "ActorDiedError" in str(error) or "ActorDiedError" in repr(error.__cause__)
    with pytest.raises(SessionLostError) as lost:  # told once ...
        view.call(_tasks.recall, "k")
    assert lost.value.exit_kind == "lost"
    assert view.call(_tasks.recall, "k") is None  # ... then a fresh session
    assert any(m.get("exit_kind") == "lost" and m.get("node_id") for m in crashes)
    _wait_ready(pool, 2)
    assert pool.call(_tasks.add, 20, 22) == 42
    assert pool.stats()["lost"] >= 1
    assert pool.health()["crashes_by_kind"].get("lost", 0) >= 1


def test_an_idempotent_call_is_retried_after_a_host_loss(
    ray_session: Any, pool: snakepit.Pool, tmp_path: Path
) -> None:
    _wait_ready(pool, 2)
    pid_file = tmp_path / "pid"
    future = pool.options(idempotent=True).submit(_backend_tasks.sleep_then, str(pid_file), 2, 7)
    _kill_host_running(ray_session, pool, pid_file)
    assert future.result(timeout=60) == 7  # ran again on a live host
    assert pool.stats()["retries"] >= 1
    _wait_ready(pool, 2)


def test_worker_events_reach_the_driver_with_their_node(pool: snakepit.Pool) -> None:
    seen: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    events = [("snakepit", "call", "stop"), ("snakepit", "worker", "crash")]
    telemetry.attach_many("test-events", events, lambda e, m, meta, c: seen.append((e, dict(meta))))
    try:
        pool.call(_tasks.add, 1, 1)
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        pool.call(_tasks.add, 1, 1)
        deadline = time.monotonic() + 10
        while not any(e[1] == "worker" for e, _ in seen) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        telemetry.detach("test-events")
    names = {e for e, _ in seen}
    assert names == set(events)
    node = pool.hosts()[0]["node_id"]  # type: ignore[attr-defined]
    for _, meta in seen:
        assert meta["backend"] == "ray"
        assert meta["node_id"] == node
        assert meta["pool"] == pool.name
    crash = next(meta for e, meta in seen if e[1] == "worker")
    assert crash["exit_kind"] == "segfault"


def test_cancel_stops_a_running_call(pool: snakepit.Pool, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    future = pool.submit(_backend_tasks.sleep_then, str(pid_file), 60, 1)
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert pool.cancel(future)
    with pytest.raises(CallCancelledError):
        future.result(timeout=30)
    assert pool.call(_tasks.add, 1, 1) == 2


def test_circuit_breaker_opens_on_crashes(ray_session: Any) -> None:
    circuits = CircuitBreakerRegistry(failure_threshold=2, open_duration=60)
    with snakepit.Pool(workers=1, circuit_breaker=circuits, backend=BACKEND) as pool:
        for _ in range(2):
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
        with pytest.raises(CircuitOpenError):
            pool.call(_tasks.add, 1, 1)


def test_shutdown_leaves_no_host_actor(ray_session: Any) -> None:
    with snakepit.Pool(workers=1, backend=BACKEND) as pool:
        name = pool.hosts()[0]["actor"]  # type: ignore[attr-defined]
        assert pool.call(_tasks.add, 1, 1) == 2
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray_session.get_actor(name)


def test_call_gets_its_reply_on_its_own_thread(pool: snakepit.Pool) -> None:
    import threading

    threads: list[str] = []
    original = pool._replied  # type: ignore[attr-defined]

    def replied(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        original(*args)

    pool._replied = replied  # type: ignore[attr-defined]
    try:
        assert pool.call(_tasks.add, 2, 3) == 5
        assert pool.options(timeout=30).call(_tasks.add, 1, 1) == 2
        assert pool.submit(_tasks.add, 4, 4).result(timeout=60) == 8
    finally:
        del pool._replied  # type: ignore[attr-defined]
    me = threading.current_thread().name
    assert threads[:2] == [me, me]
    assert threads[2] != me  # submit: the pool's completion thread


def test_an_interrupted_call_still_completes_its_future(pool: snakepit.Pool) -> None:
    import signal
    import threading

    timer = threading.Timer(
        0.5, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT)
    )
    timer.start()
    before = pool.stats()["completed"]
    with pytest.raises(KeyboardInterrupt):
        pool.call(time.sleep, 1.5)
    deadline = time.monotonic() + 30
    while pool.stats()["completed"] == before:
        assert time.monotonic() < deadline, pool.stats()
        time.sleep(0.05)
    assert pool.call(_tasks.add, 1, 2) == 3
