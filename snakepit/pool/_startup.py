"""Validation at construction: ``Pool(...)`` fails itself rather than its first call.

Two checks (docs/crash-recovery.md, "Validation at construction"):

* :func:`check_devices`, before anything starts: every device named
  explicitly (``cuda:1``, ``rocm``, ``mps``) must exist here, else
  :class:`~snakepit.errors.DeviceNotAvailableError`. ``auto`` (whatever is
  found) and ``cpu`` (always there) need no check, and ``cpu`` runs no
  hardware detection at all.
* :func:`wait_started`, while the pool waits for its workers: an initializer
  that raises in any worker, every worker given up on, or no worker ready
  within ``start_timeout``, fails the pool with
  :class:`~snakepit.errors.WorkerStartError` (the worker's error chained).
  Some workers ready and others still starting when it runs out is a
  WARNING record: the pool starts, and calls wait for the slow ones.
  Later restarts that fail behave as before: the position is retried with
  backoff and given up on after too many crashes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from snakepit import hardware
from snakepit._wire import protocol
from snakepit.errors import ExitKind, SnakepitError, WorkerStartError

if TYPE_CHECKING:
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["STARTED_STATES", "abandon", "check_devices", "wait_started"]

#: Worker states in which a starting pool has nothing more to wait for: ready,
#: given up on, or parked / retiring (an idle timeout or a recycle can come
#: before a sibling is ready).
STARTED_STATES = frozenset({"idle", "unhealthy", "retiring", "parked"})

#: States of a worker that has started (ready, or parked after an idle timeout).
_READY_STATES = STARTED_STATES - {"unhealthy"}
_log = logging.getLogger("snakepit")

#: Device kinds that need no hardware to exist.
_ALWAYS_THERE = ("auto", "cpu")
#: How long a pool that failed to start waits for its workers' clean-up.
_CLEANUP_SECONDS = 5.0


def check_devices(devices: Sequence[str]) -> None:
    """Raise DeviceNotAvailableError for a device in ``devices`` that this machine lacks.

    Unknown or malformed device strings raise it too (from
    :func:`snakepit.hardware.parse_device`).
    """
    for entry in dict.fromkeys(devices):
        if hardware.parse_device(entry).kind in _ALWAYS_THERE:
            continue
        # Raises with the reason and the devices present (and reports the
        # unavailable device in telemetry).
        hardware.select(entry)


def _failed_initializer(handle: WorkerHandle) -> bool:
    """The position's last start ended with its initializer raising (lock held)."""
    last = handle.last_exit
    return (
        handle.init_error is not None
        and last is not None
        and last.exit_code == protocol.EXIT_INIT_FAILED
    )


def wait_started(supervisor: Supervisor, timeout: float) -> None:
    """Wait until every worker is ready or given up on, failing fast (see module doc).

    Raises:
        WorkerStartError: An initializer raised, no worker could start, or
            none was ready within ``timeout`` seconds.
    """
    handles = supervisor.handles
    with supervisor.lock:
        settled = supervisor.idle_changed.wait_for(
            lambda: (
                any(_failed_initializer(h) for h in handles)
                or all(h.state in STARTED_STATES for h in handles)
            ),
            timeout=timeout,
        )
        failed = next((h for h in handles if _failed_initializer(h)), None)
        everyone_down = all(h.state == "unhealthy" for h in handles)
        cause = failed.init_error if failed is not None else None
        worker_id = failed.index if failed is not None else None
        last = handles[-1].last_exit
        ready = sum(h.state in _READY_STATES for h in handles)
    if failed is not None and cause is not None:
        python_type = getattr(cause, "python_type", type(cause).__name__)
        reason = f"its initializer raised {python_type}: {cause.message}"
        raise WorkerStartError(
            f"worker {worker_id} could not start: {reason}",
            reason=reason,
            worker_id=worker_id,
            exit_kind=ExitKind.python_error.value,
            remote_traceback=cause.remote_traceback,
        ) from cause
    if everyone_down:
        causes = [h.init_error for h in handles if h.init_error is not None]
        error: SnakepitError | None = causes[-1] if causes else None
        how = last.description if last is not None else "no worker became ready"
        reason = f"every worker died before it was ready and was given up on (last: {how})"
        raise WorkerStartError(
            f"the pool could not start: {reason}",
            reason=reason,
            exit_kind=last.kind.value if last is not None else None,
        ) from error
    if not settled and ready == 0:
        reason = f"no worker was ready within start_timeout={timeout:g} s"
        raise WorkerStartError(f"the pool could not start: {reason}", reason=reason)
    if not settled:
        _log.warning(
            "%s: %d of %d workers ready after start_timeout=%g s; calls wait for the others",
            supervisor.name,
            ready,
            len(handles),
            timeout,
        )


def abandon(supervisor: Supervisor) -> None:
    """End a pool that failed to start, leaving no worker or shared memory.

    Its workers are killed, not asked to stop: they have no call to finish,
    and one still inside a slow initializer would hold ``Pool(...)`` for the
    whole grace period. The readers then unlink the dead workers' memory.
    """
    supervisor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + _CLEANUP_SECONDS
    supervisor.join_readers(deadline)
    supervisor.timers.join(max(0.0, deadline - time.monotonic()))
    # Workers that died before shutdown began did not close it on their way out.
    supervisor._watcher.close()
