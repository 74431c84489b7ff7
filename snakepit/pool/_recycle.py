"""Replacing workers on purpose: tasks per child, memory limits, idle timeout.

A recycle is not a crash: the worker is asked to stop after it has replied
(``MSG_SHUTDOWN``), exits normally and is replaced at once, forked by the
pool's template where it has one, so it costs a few milliseconds. No crash
is counted, no circuit or health verdict is recorded; the pool emits
``snakepit.worker.recycle`` instead. Reasons (the event's ``reason``):

``max_tasks_per_child``
    the worker has answered that many calls (counted here, per process);
``max_memory_per_worker``
    after a call, the worker's private resident memory was above the limit
    (the worker measures it and says so before its reply, ``MSG_RETIRE``);
``memory_limit_per_worker``
    a call failed with ``MemoryError`` under the worker's hard limit
    (``RLIMIT_DATA``, set in the worker; see :mod:`snakepit.worker._limits`);
``idle_timeout``
    the worker had no call for that long: it exits and its position is
    *parked*, started again when a call needs it (no floor is kept).

Everything here runs with the supervisor's lock held where the name says
``_locked``; frames are sent outside it. The idle check is one timer on the
monitor thread, armed only while a worker is idle, so nothing polls.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snakepit._wire import protocol

from ._direct import stop_locked
from ._handle import kill_if_alive

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["RETIRE_REASONS", "RecyclePolicy", "Recycler", "parse_bytes"]

#: Why a worker is replaced (the ``reason`` of ``snakepit.worker.recycle``).
RETIRE_REASONS = frozenset(
    {"max_tasks_per_child", "max_memory_per_worker", "memory_limit_per_worker", "idle_timeout"}
)
#: A retired worker: why, calls it answered, its resident bytes (memory reasons).
Retired = tuple[str, int, int | None]
_WORKER_REASONS = frozenset({"max_memory_per_worker", "memory_limit_per_worker"})

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_FACTORS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    # "2G" means 2 GiB, as docker, ulimit and Kubernetes' "Gi" read it.
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_bytes(value: int | str | None, name: str) -> int | None:
    """A byte count from an int or a string such as ``"2GiB"``, ``"512MB"``, ``"1.5G"``.

    Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB,
    MiB, GiB, TiB, and bare K, M, G, T) of 1024. None stays None. Raises
    TypeError or ValueError naming the keyword ``name``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} takes a byte count (int) or a size such as '2GiB', not {value!r}")
    if isinstance(value, int):
        count = value
    else:
        match = _SIZE.match(value)
        factor = _FACTORS.get(match.group(2).lower()) if match else None
        if match is None or factor is None:
            raise ValueError(f"{name}={value!r} is not a size such as '2GiB', '512MB' or 1000000")
        count = math.floor(float(match.group(1)) * factor)
    if count <= 0:
        raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
    return count


@dataclass(frozen=True, slots=True)
class RecyclePolicy:
    """When a pool replaces a healthy worker, and where workers run.

    Attributes:
        max_tasks: Calls a worker process answers before it is replaced.
        max_memory: Private resident bytes above which a worker is replaced
            after its call (soft: the call that left it there succeeds).
        memory_limit: The worker's hard limit on its data segment
            (``RLIMIT_DATA``); an allocation past it fails with MemoryError.
        idle_timeout: Seconds without a call after which a worker exits.
        cwd: Working directory of the workers (absolute), or None.
    """

    max_tasks: int | None = None
    max_memory: int | None = None
    memory_limit: int | None = None
    idle_timeout: float | None = None
    cwd: str | None = None

    @classmethod
    def from_options(
        cls,
        *,
        max_tasks_per_child: int | None,
        max_memory_per_worker: int | str | None,
        memory_limit_per_worker: int | str | None,
        idle_timeout: float | None,
        cwd: str | os.PathLike[str] | None,
    ) -> RecyclePolicy:
        """Validate the keywords of ``Pool(...)`` (TypeError, ValueError, FileNotFoundError)."""
        if max_tasks_per_child is not None and (
            isinstance(max_tasks_per_child, bool) or not isinstance(max_tasks_per_child, int)
        ):
            raise TypeError(
                f"max_tasks_per_child must be an int or None, not {max_tasks_per_child!r}"
            )
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError("max_tasks_per_child must be >= 1")
        if idle_timeout is not None:
            if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
                raise TypeError(f"idle_timeout must be a number of seconds, not {idle_timeout!r}")
            if not math.isfinite(idle_timeout) or idle_timeout <= 0:
                raise ValueError(
                    f"idle_timeout must be a positive number of seconds, not {idle_timeout!r}"
                )
        directory: str | None = None
        if cwd is not None:
            directory = os.path.abspath(os.fspath(cwd))
            if not os.path.exists(directory):
                raise FileNotFoundError(f"cwd={os.fspath(cwd)!r}: no such directory")
            if not os.path.isdir(directory):
                raise NotADirectoryError(f"cwd={os.fspath(cwd)!r} is not a directory")
        return cls(
            max_tasks=max_tasks_per_child,
            max_memory=parse_bytes(max_memory_per_worker, "max_memory_per_worker"),
            memory_limit=parse_bytes(memory_limit_per_worker, "memory_limit_per_worker"),
            idle_timeout=None if idle_timeout is None else float(idle_timeout),
            cwd=directory,
        )

    @property
    def recycles(self) -> bool:
        """Whether the supervisor needs a :class:`Recycler` for this policy."""
        return (
            self.max_tasks is not None
            or self.max_memory is not None
            or self.memory_limit is not None
            or self.idle_timeout is not None
        )

    def worker_config(self) -> dict[str, Any]:
        """What the worker applies itself (see :mod:`snakepit.worker._limits`)."""
        return {"max_memory": self.max_memory, "memory_limit": self.memory_limit, "cwd": self.cwd}


class Recycler:
    """One pool's recycling: counts calls, retires workers, replaces or parks them."""

    def __init__(self, policy: RecyclePolicy) -> None:
        self.policy = policy
        self._idle_check_armed = False

    # ------------------------------------------------- hooks (lock held)

    def after_reply_locked(self, sup: Supervisor, handle: WorkerHandle) -> bool:
        """``handle`` answered its call: whether it retires now instead of going idle.

        When it does, its state is ``retiring`` and the caller must call
        :meth:`retire` once the lock is released.
        """
        handle.tasks += 1
        max_tasks = self.policy.max_tasks
        if handle.retire is None and max_tasks is not None and handle.tasks >= max_tasks:
            handle.retire = ("max_tasks_per_child", None)
        if handle.retire is not None and not sup.stopping and not handle.timed_out:
            handle.state = "retiring"
            return True
        if self.policy.idle_timeout is not None:
            handle.idle_since = time.monotonic()
            self._arm_idle_check_locked(sup)
        return False

    def ready_locked(self, sup: Supervisor, handle: WorkerHandle) -> None:
        """A new worker is idle: its idle time starts now."""
        if self.policy.idle_timeout is not None:
            handle.idle_since = time.monotonic()
            self._arm_idle_check_locked(sup)

    def exited_locked(self, handle: WorkerHandle, call: Call | None) -> Retired | None:
        """The process of ``handle`` is gone: why, if it was retired; None for a crash.

        A retired position is ``starting`` again (its replacement is
        scheduled by :meth:`replaced`), or ``parked`` after an idle timeout.
        """
        retire, handle.retire = handle.retire, None
        calls, handle.tasks = handle.tasks, 0
        if retire is None or call is not None or handle.state != "retiring":
            return None  # whatever happened, it was not our doing: a crash
        reason, resident = retire
        handle.state = "parked" if reason == "idle_timeout" else "starting"
        return reason, calls, resident

    def wake_locked(self, sup: Supervisor, call: Call) -> None:
        """``call`` waits in a queue: start a parked worker that can run it."""
        for handle in sup.handles:
            if handle.state != "parked":
                continue
            if (call.session is not None and call in handle.queue) or (
                call.session is None and (call.device is None or call.device == handle.device)
            ):
                handle.state = "starting"
                sup.timers.schedule_locked(0.0, functools.partial(sup._spawn, handle))
                return

    # ---------------------------------------------------- actions (no lock)

    def asked(self, sup: Supervisor, handle: WorkerHandle, body: Any) -> None:
        """The worker says it is over a memory limit: retire it after its reply."""
        try:
            reason, resident = body
        except (TypeError, ValueError):
            return  # a worker is not trusted: anything malformed is ignored
        if reason not in _WORKER_REASONS or type(resident) is not int:
            return
        with sup.lock:
            if handle.retire is None:
                handle.retire = (reason, resident)

    def retire(self, sup: Supervisor, handle: WorkerHandle) -> None:
        """Ask a ``retiring`` worker to exit; kill it if it lingers past the grace."""
        with sup.lock:
            proc, sock = handle.proc, handle.sock
            stop_locked(handle.channel)
        if sock is not None:
            with contextlib.suppress(OSError):
                protocol.send_frame(sock, protocol.pack(protocol.MSG_SHUTDOWN, 0, None))
        if proc is not None:
            grace = sup._restarts.grace
            sup.timers.schedule(grace + 1.0, functools.partial(kill_if_alive, proc))

    def replaced(
        self,
        sup: Supervisor,
        handle: WorkerHandle,
        pid: int | None,
        retired: Retired,
        uptime: float,
    ) -> None:
        """A retired worker is gone: say so, and start its replacement (not when parked)."""
        reason, calls, resident = retired
        with sup.lock:
            sup.counters["recycles"] = sup.counters.get("recycles", 0) + 1
            replace = reason != "idle_timeout" and not sup.stopping
            if replace:
                sup.timers.schedule_locked(0.0, functools.partial(sup._spawn, handle))
            elif sup._queue:
                # Calls came while it was retiring: nobody would wake it.
                handle.state = "starting"
                sup.timers.schedule_locked(0.0, functools.partial(sup._spawn, handle))
        sup.report.worker_recycled(
            handle.index, pid, handle.device, reason, calls, uptime, resident, replace
        )

    # -------------------------------------------------------------- idle

    def _arm_idle_check_locked(self, sup: Supervisor) -> None:
        timeout = self.policy.idle_timeout
        if self._idle_check_armed or timeout is None:
            return
        self._idle_check_armed = True
        sup.timers.schedule_locked(timeout, functools.partial(self._check_idle, sup))

    def _check_idle(self, sup: Supervisor) -> None:
        """On the monitor: retire workers idle past the timeout; re-arm for the next."""
        timeout = self.policy.idle_timeout
        assert timeout is not None
        now = time.monotonic()
        expired: list[WorkerHandle] = []
        with sup.lock:
            self._idle_check_armed = False
            if sup.stopping:
                return
            earliest: float | None = None
            for handle in sup.handles:
                if handle.state != "idle" or handle.proc is None:
                    continue
                due = handle.idle_since + timeout
                if due <= now:
                    handle.state = "retiring"
                    handle.retire = ("idle_timeout", None)
                    expired.append(handle)
                else:
                    earliest = due if earliest is None else min(earliest, due)
            if earliest is not None:
                self._idle_check_armed = True
                sup.timers.schedule_locked(earliest - now, functools.partial(self._check_idle, sup))
        for handle in expired:
            self.retire(sup, handle)
