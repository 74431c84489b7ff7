"""A Ray pool's state as callers see it, and its monitor loop.

``stats()``, ``health()``, ``workers()`` and ``hosts()`` ask the live hosts
(off the call path: each is one actor call per host); the monitor drains
idle hosts' events every ``poll_interval`` (their liveness probe too) and
kills a host whose call ran far past its timeout (the backstop).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from snakepit.errors import WorkerCrashedError

from ._ray_env import import_ray
from ._ray_errors import classify_ray_error
from ._ray_hosts import Host, emit_host_events, kill_hosts

if TYPE_CHECKING:
    from ._ray_pool import RayPool

__all__ = ["host_records", "monitor", "pool_health", "pool_stats", "worker_records"]

#: Seconds a state query waits for one host.
_ASK_SECONDS = 30


def monitor(pool: RayPool) -> None:
    """The monitor thread's loop, until the pool's wake event is set."""
    ray = import_ray()
    while not pool._wake.wait(pool._config.poll_interval):
        hosts = [h for h in pool._hosts if h.state == "ready" and h.actor is not None]
        probes = [(h, h.generation, h.actor.drain.remote()) for h in hosts]
        for host, generation, ref in probes:
            try:
                events = ray.get(ref, timeout=_ASK_SECONDS)
            except Exception as exc:  # translated
                error = classify_ray_error(exc, node_id=host.node_id)
                if isinstance(error, WorkerCrashedError):
                    pool._host_lost(host, generation, error)
                continue
            emit_host_events(pool, host, events)
        _backstop(pool)


def _backstop(pool: RayPool) -> None:
    now = time.monotonic()
    margin = pool._grace + pool._config.backstop
    with pool._lock:
        late = [
            c
            for c in pool._calls.values()
            if c.timeout is not None
            and c.started is not None
            and now - c.started > c.timeout + margin
        ]
    for call in late:
        host = pool._hosts[call.host] if call.host is not None else None
        if host is not None and host.generation == call.generation and host.actor is not None:
            kill_hosts([host])  # its calls fail "lost"; a new host starts


def pool_stats(pool: RayPool) -> dict[str, int]:
    """``stats()``: the hosts' worker states summed, the queue, the counters."""
    ray = import_ray()
    total: dict[str, int] = dict.fromkeys(
        ("idle", "busy", "starting", "crashed", "unhealthy", "parked", "queue_depth", "crashes"), 0
    )
    total["size"] = sum(h.size for h in pool._hosts)
    for host in list(pool._hosts):
        if host.state != "ready" or host.actor is None:
            key = {"starting": "starting", "failed": "unhealthy"}.get(host.state, "crashed")
            total[key] += host.size
            continue
        try:
            stats = ray.get(host.actor.stats.remote(), timeout=_ASK_SECONDS)
        except Exception:  # a host lost meanwhile counts as crashed
            total["crashed"] += host.size
            continue
        for key in ("idle", "busy", "starting", "crashed", "unhealthy", "parked", "crashes"):
            total[key] += int(stats.get(key, 0))
        total["queue_depth"] += int(stats.get("queue_depth", 0))
    with pool._lock:
        total["queue_depth"] += len(pool._waiting)
        total["crashes"] += pool._counters["lost"]
        return {**total, **pool._counters}


def pool_health(pool: RayPool) -> dict[str, Any]:
    """``health()``: the driver's monitor, with each worker's host and node."""
    ray = import_ray()
    snapshot = pool._health.snapshot()
    workers: dict[int, dict[str, Any]] = {}
    for host in list(pool._hosts):
        inner: dict[int, Any] = {}
        if host.state == "ready" and host.actor is not None:
            try:
                inner = ray.get(host.actor.health.remote(), timeout=_ASK_SECONDS).get("workers", {})
            except Exception:  # lost meanwhile: reported by its state
                inner = {}
        for offset in range(host.size):
            entry = dict(inner.get(offset, {"state": host.state, "pid": None}))
            entry.update(node_id=host.node_id, host=host.index)
            workers[host.first_slot + offset] = entry
    snapshot["workers"] = workers
    return snapshot


def worker_records(hosts: list[Host]) -> list[tuple[str | None, int, bool]]:
    """``(node_id, pid, on the driver's node)`` of every live worker."""
    ray = import_ray()
    found: list[tuple[str | None, int, bool]] = []
    for host in list(hosts):
        if host.state == "ready" and host.actor is not None:
            try:
                pids = ray.get(host.actor.worker_pids.remote(), timeout=_ASK_SECONDS)
            except Exception:
                continue
            found.extend((host.node_id, pid, host.local) for pid in pids)
    return found


def host_records(hosts: list[Host]) -> list[dict[str, Any]]:
    """``hosts()``: one plain record per host."""
    return [
        {
            "host": h.index,
            "actor": h.actor_name,
            "state": h.state,
            "node_id": h.node_id,
            "node_ip": h.node_ip,
            "pid": h.pid,
            "generation": h.generation,
            "slots": list(range(h.first_slot, h.first_slot + h.size)),
            "same_memory": h.same_memory,
        }
        for h in hosts
    ]
