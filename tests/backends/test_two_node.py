"""``Pool(backend="ray")`` on a simulated two-node cluster (``two_nodes``).

Both "nodes" are raylets on this machine, on loopback; node B has its own
node id (and the resource ``node_b``), so a host placed there takes the
remote data path although it could map the driver's /dev/shm. Few tests:
two raylets on two cores are heavy. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import telemetry
from snakepit.backends import RayBackend
from snakepit.backends._ray_data import RAY_INLINE, RAY_OBJECT, SHARED_MEMORY
from snakepit.errors import DeviceMismatchError, SessionLostError, WorkerCrashedError
from snakepit.zero_copy import GPUTensorRef
from snakepit.zero_copy._runtime import collect_garbage

from . import _cluster_tasks as tasks
from .conftest import TwoNodes

pytestmark = pytest.mark.timeout(240)

#: One host per node: a host reserves one CPU, SPREAD puts them apart.
SPREAD = RayBackend(
    num_cpus_per_worker=1.0, poll_interval=0.2, actor_options={"scheduling_strategy": "SPREAD"}
)
#: Forced remote: the host must be on node B (0 CPUs: node B's is taken).
ON_B = RayBackend(
    num_cpus_per_worker=0.0, poll_interval=0.2, actor_options={"resources": {"node_b": 0.5}}
)
MIB = 1 << 20


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _ready_on(pool: snakepit.Pool) -> list[str]:
    return [h["node_id"] for h in pool.hosts() if h["state"] == "ready"]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def spread(two_nodes: TwoNodes) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, terminate_grace=0.3, backend=SPREAD) as pool:
        yield pool


@contextlib.contextmanager
def _serialize_events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    telemetry.attach(
        "test-two-node-serialize",
        ("snakepit", "serialize", "stop"),
        lambda e, m, meta, c: seen.append({**meta, **m}),
    )
    try:
        yield seen
    finally:
        telemetry.detach("test-two-node-serialize")


def test_calls_spread_over_both_nodes(two_nodes: TwoNodes, spread: snakepit.Pool) -> None:
    assert sorted(_ready_on(spread)) == sorted([two_nodes.head_id, two_nodes.node_b_id])
    where = dict(spread.workers())  # type: ignore[attr-defined]
    node_of = {pid: node for node, pid in spread.workers()}  # type: ignore[attr-defined]
    assert len(where) == 2
    futures = [spread.submit(tasks.pid_after, 0.2) for _ in range(8)]
    pids = [f.result(timeout=60) for f in futures]
    assert {node_of[pid] for pid in pids} == {two_nodes.head_id, two_nodes.node_b_id}
    by_host = {h["node_id"]: h["same_memory"] for h in spread.hosts()}  # type: ignore[attr-defined]
    assert by_host == {two_nodes.head_id: True, two_nodes.node_b_id: False}


def test_a_host_forced_onto_node_b_takes_the_ray_object_path(two_nodes: TwoNodes) -> None:
    big = np.arange(2 * MIB // 8, dtype=np.float64)  # above the 1 MiB threshold
    shared = snakepit.zeros(64, "float64")  # small but in shared memory
    with snakepit.Pool(workers=1, backend=ON_B) as pool:
        [host] = pool.hosts()  # type: ignore[attr-defined]
        assert (host["node_id"], host["same_memory"]) == (two_nodes.node_b_id, False)
        with _serialize_events() as seen:
            assert pool.call(tasks.total, big) == float(big.sum())
            assert pool.call(tasks.total, np.ones(16)) == 16.0
        encodes = [m for m in seen if "transport" in m]
        assert [m["transport"] for m in encodes] == [RAY_OBJECT, RAY_INLINE]
        assert encodes[0]["node_id"] == two_nodes.node_b_id
        assert (encodes[0]["arrays"], encodes[0]["bytes"]) == (1, big.nbytes)
        # A write could never reach the caller: the worker's copy is read-only.
        assert pool.call(tasks.writable, big) is False
        assert pool.call(tasks.writable, shared) is False
        with pytest.raises(ValueError, match="read-only"):
            pool.call(tasks.write_first, shared, 7.0)
        assert shared[0] == 0.0
        # The result is the caller's own writable copy, as from a local pool.
        echoed = pool.call(tasks.echo, big)
        assert np.array_equal(echoed, big)
        assert echoed.flags.writeable
        echoed[0] = -1.0
        # CUDA IPC handles cannot be opened on another machine: refused, typed.
        handle = GPUTensorRef(
            handle=bytes(64), offset=0, shape=(4,), dtype="float32", strides=(4,),
            device_id=0, nbytes=16,
        )  # fmt: skip
        with pytest.raises(DeviceMismatchError, match="cannot cross nodes"):
            pool.call(tasks.total, handle)
        assert pool.call(tasks.total, np.ones(4)) == 4.0  # the pool is unharmed
    del echoed, shared


def test_the_callers_node_keeps_shared_memory(spread: snakepit.Pool, two_nodes: TwoNodes) -> None:
    big = snakepit.zeros(2 * MIB // 8, "float64")
    big[0] = 3.0
    with _serialize_events() as seen:
        futures = [spread.submit(tasks.total, big) for _ in range(6)]
        assert [f.result(timeout=60) for f in futures] == [3.0] * 6
    by_node = {m["node_id"]: m["transport"] for m in seen if "transport" in m}
    assert by_node[two_nodes.head_id] == SHARED_MEMORY
    assert by_node.get(two_nodes.node_b_id, RAY_OBJECT) == RAY_OBJECT


def _pin_session_on(pool: snakepit.Pool, node: str) -> Any:
    """A session view whose worker is on ``node`` (sessions pin to a host at first call)."""
    node_of = {pid: n for n, pid in pool.workers()}  # type: ignore[attr-defined]
    for attempt in range(8):
        # An idle pool pins to its first host: busy calls steer it to another.
        busy = [pool.submit(tasks.pid_after, 0.5) for _ in range(attempt % 4)]
        view = pool.options(session=f"pinned-{attempt}")
        landed = node_of[view.call(tasks.pid_after, 0.0)]
        for future in busy:
            future.result(timeout=60)
        if landed == node:
            return view
    raise AssertionError(f"no session landed on node {node}")


def test_removing_node_b_mid_load_fails_or_retries_every_call(
    two_nodes: TwoNodes, spread: snakepit.Pool
) -> None:
    session = _pin_session_on(spread, two_nodes.node_b_id)
    b_pids = [h["pid"] for h in spread.hosts() if h["node_id"] == two_nodes.node_b_id]  # type: ignore[attr-defined]
    b_pids += [pid for node, pid in spread.workers() if node == two_nodes.node_b_id]  # type: ignore[attr-defined]
    plain = [spread.submit(tasks.pid_after, 1.5) for _ in range(4)]
    retried = [spread.options(idempotent=True).submit(tasks.pid_after, 1.5) for _ in range(4)]
    time.sleep(0.5)  # both hosts are running calls
    two_nodes.cluster.remove_node(two_nodes.node_b, allow_graceful=False)
    outcomes: list[str] = []
    for future in plain + retried:
        try:
            future.result(timeout=90)  # bounded: a hang fails here
            outcomes.append("ok")
        except WorkerCrashedError as exc:
            outcomes.append(f"{exc.exit_kind}:{exc.signal}:{exc.exit_code}")
    assert all(isinstance(f, Future) and f.done() for f in plain + retried)
    assert set(outcomes) <= {"ok", "lost:None:None"}, outcomes
    assert "lost:None:None" in outcomes[:4], outcomes  # a non-idempotent call was on node B
    assert outcomes[4:] == ["ok"] * 4, outcomes  # idempotent ones ran again elsewhere
    with pytest.raises(SessionLostError) as lost:
        session.call(tasks.pid_after, 0.0)
    assert lost.value.exit_kind == "lost"
    assert spread.stats()["lost"] >= 1
    # The lost slot comes back on the remaining node; the pool keeps serving.
    _wait(lambda: _ready_on(spread) == [two_nodes.head_id] * 2, "a replacement host")
    assert spread.call(tasks.total, np.ones(8)) == 8.0
    for pid in b_pids:  # killed with node B: nobody on that "node" unlinks their regions
        collect_garbage(owner_pid=pid)
