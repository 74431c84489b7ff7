"""The driver's records of hosts and calls, and the events hosts send back."""

from __future__ import annotations

import contextlib
import random
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from snakepit.telemetry import _bus
from snakepit.telemetry._bus import Event
from snakepit.telemetry._events import WORKER_CRASH
from snakepit.zero_copy._runtime import collect_garbage

from ._ray_env import import_ray

if TYPE_CHECKING:
    from ._ray_pool import RayPool

__all__ = [
    "Host",
    "RayCall",
    "emit_host_events",
    "host_lost_reported",
    "kill_hosts",
    "listened_by_driver",
    "probe_array",
]

#: Calls a host may have in flight per worker: one running, one waiting in its
#: local queue, so a worker never waits for the network between two calls.
CALLS_PER_WORKER = 2
#: What hosts record even when no handler here listens (see listened_by_driver).
_ALWAYS_RECORDED: frozenset[Event] = frozenset({WORKER_CRASH})


@dataclass(eq=False)
class Host:
    """One host actor slot of the pool (its actor changes with each generation)."""

    index: int
    first_slot: int
    size: int
    actor: Any = None
    actor_name: str = ""
    generation: int = 0
    #: starting | ready | lost (a replacement is due) | failed | stopped
    state: str = "starting"
    node_id: str | None = None
    node_ip: str | None = None
    pid: int | None = None
    worker_pids: list[int] = field(default_factory=list)
    #: On the driver's node (its shared memory is cleaned up from here).
    local: bool = False
    #: Same node and the driver's shared memory mapped there (the handshake).
    same_memory: bool = False
    losses: int = 0
    error: BaseException | None = None
    running: set[int] = field(default_factory=set)
    #: The events this host was last told to record for the driver.
    listened: frozenset[Event] = frozenset()

    def has_room(self) -> bool:
        """Whether another call may be sent to this host now."""
        return len(self.running) < CALLS_PER_WORKER * self.size


@dataclass(eq=False)
class RayCall:
    """One call of a :class:`RayPool`, across its attempts."""

    call_id: int
    fn_id: int
    fn_blob: bytes
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    idempotent: bool
    session: str | None
    device: str | None
    outer: Future[Any]
    attempt: int = 1
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    host: int | None = None
    generation: int = 0
    keepalive: list[Any] = field(default_factory=list)
    #: id(array) -> (array, ObjectRef): arguments put into Ray's store for a
    #: remote host, once per call (retries reuse them; see _ray_data).
    objects: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    #: The thread of a ``call`` that waits for this call (its first attempt):
    #: it gets the reply with ``ray.get`` itself, not through the pool's
    #: completion thread (see ``RayPool._get_reply``).
    caller_thread: int | None = None
    #: The first attempt's ObjectRef, for that thread to get.
    ref: Any = None


def probe_array() -> np.ndarray[Any, Any]:
    """A small shared array with a random pattern: the same-node handshake."""
    from snakepit.zero_copy import zeros

    array = zeros(8, "int64")
    array[:4] = [random.randrange(1 << 62) for _ in range(4)]
    return array


#: ``_bus.handled`` when last looked at, and what listened_by_driver made of it.
_listened: tuple[object, frozenset[Event]] = (None, _ALWAYS_RECORDED)


def listened_by_driver() -> frozenset[Event]:
    """The events hosts record for this process: those its handlers listen
    to, and worker crashes, which its health monitor counts whoever listens.

    Asked at every call sent: worked out again only when the bus's table
    of handlers was replaced (an attach or detach), and then the same
    object until the next one, so a host's copy compares at once.
    """
    global _listened
    table = _bus.handled
    if _listened[0] is not table:
        _listened = (table, frozenset(table) | _ALWAYS_RECORDED)
    return _listened[1]


def emit_host_events(pool: RayPool, host: Host, events: list[tuple[Any, ...]]) -> None:
    """Re-emit a host's events on this process's bus, with the host's node.

    Metadata gains ``backend``, ``node_id``, ``node_ip`` and ``host``; ``pool``
    becomes the driver's pool name; a ``worker_id`` becomes the pool-wide slot.
    A worker crash the host saw is recorded in the driver's health monitor.
    """
    for event, measurements, metadata in events:
        meta = dict(metadata)
        inner = meta.get("worker_id")
        if isinstance(inner, int):
            meta["worker_id"] = host.first_slot + inner
        meta.update(
            pool=pool.name,
            backend="ray",
            node_id=host.node_id,
            node_ip=host.node_ip,
            host=host.index,
        )
        if tuple(event) == ("snakepit", "worker", "crash"):
            slot = meta.get("worker_id")
            pool._health.record_crash(
                slot if isinstance(slot, int) else host.first_slot,
                meta.get("device") if isinstance(meta.get("device"), str) else None,
                str(meta.get("exit_kind", "unknown")),
            )
        _bus.execute(tuple(event), measurements, meta)


def kill_hosts(hosts: list[Host]) -> None:
    """Kill the hosts' actors; unlink the shared memory of those on this node.

    A killed host cannot unlink its own regions (results it sent here live
    in them: our mappings stay valid after the unlink, as for a dead local
    worker's).
    """
    ray = import_ray()
    mine: list[int] = []
    for host in hosts:
        if host.actor is not None:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(host.actor, no_restart=True)
        if host.local and host.pid is not None:
            mine.append(host.pid)
    for pid in mine:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout=10)
        collect_garbage(owner_pid=pid)


def host_lost_reported(pool: RayPool, host: Host, error: BaseException) -> None:
    """A lost host's slots count as crashes (kind ``lost``) in the driver's health
    monitor, and one ``snakepit.worker.crash`` event says so, with the node."""
    for slot in range(host.first_slot, host.first_slot + host.size):
        pool._health.record_crash(slot, None, "lost")
    _bus.execute(
        ("snakepit", "worker", "crash"),
        {"uptime": 0.0},
        {
            "pool": pool.name,
            "worker_id": host.first_slot,
            "pid": host.pid,
            "exit_kind": "lost",
            "backend": "ray",
            "node_id": host.node_id,
            "host": host.index,
            "description": str(error),
        },
    )
