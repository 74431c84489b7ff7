"""The pool's telemetry: every event the supervisor emits, as one named method each.

Each method checks that somebody listens before it builds an event, so an
unobserved pool pays one dict lookup per event (see docs/telemetry.md).
Health alerts and circuit transitions are emitted by the health monitor and
the breakers themselves.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from snakepit import errors as snakepit_errors
from snakepit.telemetry import _bus
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import (
    CALL_EXCEPTION,
    CALL_START,
    CALL_STOP,
    ERROR,
    POOL_CHECKIN,
    POOL_CHECKOUT,
    POOL_SIZE,
    RETRY_ATTEMPT,
    SERIALIZE_STOP,
    SESSION_LOST,
    WORKER_CRASH,
    WORKER_RECYCLE,
    WORKER_RESTART,
    WORKER_START,
)
from snakepit.telemetry._failures import ensure_failure_logging

if TYPE_CHECKING:
    from snakepit._wire.codec import Encoded

    from ._calls import Call
    from ._exits import ExitInfo


def error_kind(error: BaseException) -> str:
    """The public snakepit class of ``error`` (``PythonError``, not ``RemoteKeyError``)."""
    for cls in type(error).__mro__:
        name: str = cls.__name__
        if getattr(snakepit_errors, name, None) is cls:
            return name
    return type(error).__name__


def _describe(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}>"


class Reporter:
    """Emits one pool's events, each tagged with the pool's name."""

    __slots__ = ("pool",)

    def __init__(self, pool: str) -> None:
        self.pool = pool
        # Failures are WARNING records on the "snakepit" logger unless turned off.
        ensure_failure_logging()

    # ------------------------------------------------------------------ calls

    def call_started(self, call: Call) -> None:
        if CALL_START in _bus.reaching:
            execute(
                CALL_START,
                {"monotonic_time": call.submitted, "system_time": time.time()},
                {
                    "call_id": call.call_id,
                    "function": call.function,
                    "pool": self.pool,
                    "device": call.device,
                },
            )

    def encoded(self, what: str, duration: float, encoded: Encoded) -> None:
        """Arguments encoded (``what="arguments"``) in the caller's thread
        (sized only when somebody listens: that walks the descriptors)."""
        if SERIALIZE_STOP in _bus.reaching:
            execute(
                SERIALIZE_STOP,
                {"duration": duration, "bytes": encoded.size, "arrays": len(encoded.keepalive)},
                {"direction": "encode", "what": what},
            )

    def wants_decoded(self) -> bool:
        """Whether :meth:`decoded` would reach anybody (sizing a reply costs)."""
        return SERIALIZE_STOP in _bus.reaching

    def decoded(self, what: str, duration: float, size: int) -> None:
        """A reply (``"result"`` or ``"error"``) decoded in a reader thread."""
        if enabled(SERIALIZE_STOP):
            execute(
                SERIALIZE_STOP,
                {"duration": duration, "bytes": size, "arrays": 0},
                {"direction": "decode", "what": what},
            )

    def checked_out(self, call: Call) -> None:
        if POOL_CHECKOUT in _bus.reaching:
            execute(
                POOL_CHECKOUT,
                {"queue_time": call.queue_time},
                {"call_id": call.call_id, "worker_id": call.worker_id, "pool": self.pool},
            )

    def checked_in(self, call: Call, worker_id: int, busy_time: float) -> None:
        if POOL_CHECKIN in _bus.reaching:
            execute(
                POOL_CHECKIN,
                {"busy_time": busy_time},
                {"call_id": call.call_id, "worker_id": worker_id, "pool": self.pool},
            )

    def retrying(self, call: Call, error: BaseException, delay: float) -> None:
        if enabled(RETRY_ATTEMPT):
            execute(
                RETRY_ATTEMPT,
                {"attempt": call.attempt + 1, "delay": delay},
                {"call_id": call.call_id, "kind": error_kind(error), "pool": self.pool},
            )

    def wants_outcome(self) -> bool:
        """Whether a successful call's :meth:`outcome` would reach anybody."""
        return CALL_STOP in _bus.reaching

    def outcome(self, call: Call, error: BaseException | None) -> None:
        """The call's end: ``call.stop`` or ``call.exception`` (and ``error``)."""
        if error is None:
            if enabled(CALL_STOP):
                duration = time.monotonic() - call.submitted
                execute(
                    CALL_STOP,
                    {
                        "duration": duration,
                        "queue_time": call.queue_time,
                        "serialize_time": call.serialize_time,
                        "python_time": call.python_time,
                        "deserialize_time": call.deserialize_time,
                        "attempts": call.attempt,
                    },
                    self._call_metadata(call),
                )
            return
        if not (enabled(CALL_EXCEPTION) or enabled(ERROR)):
            return
        duration = time.monotonic() - call.submitted
        metadata = self._call_metadata(call)
        kind = error_kind(error)
        reason = _describe(error)
        metadata["python_type"] = getattr(error, "python_type", None)
        if enabled(CALL_EXCEPTION):
            execute(
                CALL_EXCEPTION,
                {
                    "duration": duration,
                    "queue_time": call.queue_time,
                    "serialize_time": call.serialize_time,
                    "python_time": call.python_time,
                    "attempts": call.attempt,
                },
                {**metadata, "kind": kind, "reason": reason, "exception": error},
            )
        if enabled(ERROR):
            execute(
                ERROR,
                {},
                {"kind": kind, "message": reason, "exception": error, "call_id": call.call_id},
            )

    def _call_metadata(self, call: Call) -> dict[str, Any]:
        return {
            "call_id": call.call_id,
            "function": call.function,
            "pool": self.pool,
            "worker_id": call.worker_id,
        }

    # ---------------------------------------------------------------- workers

    def worker_started(
        self, worker_id: int, pid: int, device: str | None, restart: bool, startup_time: float
    ) -> None:
        if enabled(WORKER_START):
            execute(
                WORKER_START,
                {"startup_time": startup_time},
                {
                    "worker_id": worker_id,
                    "pid": pid,
                    "device": device,
                    "restart": restart,
                    "pool": self.pool,
                },
            )

    def worker_crashed(
        self,
        worker_id: int,
        pid: int | None,
        device: str | None,
        info: ExitInfo,
        call_id: int | None,
        uptime: float,
        function: str | None = None,
    ) -> None:
        if enabled(WORKER_CRASH):
            execute(
                WORKER_CRASH,
                {"uptime": uptime},
                {
                    "worker_id": worker_id,
                    "pid": pid,
                    "device": device,
                    "exit_kind": info.kind.value,
                    "signal": info.signal,
                    "exit_code": info.exit_code,
                    "call_id": call_id,
                    "function": function,
                    "pool": self.pool,
                },
            )

    def worker_restarting(self, worker_id: int, crashes: int, delay: float) -> None:
        if enabled(WORKER_RESTART):
            execute(
                WORKER_RESTART,
                {"delay": delay},
                {"worker_id": worker_id, "crashes": crashes, "pool": self.pool},
            )

    def worker_recycled(
        self,
        worker_id: int,
        pid: int | None,
        device: str | None,
        reason: str,
        calls: int,
        uptime: float,
        resident: int | None,
        replaced: bool,
    ) -> None:
        """A worker was retired on purpose (see ``_recycle.py``) and has exited."""
        if enabled(WORKER_RECYCLE):
            measurements: dict[str, float] = {"uptime": uptime, "calls": calls}
            if resident is not None:
                measurements["resident_bytes"] = resident
            execute(
                WORKER_RECYCLE,
                measurements,
                {
                    "worker_id": worker_id,
                    "pid": pid,
                    "device": device,
                    "reason": reason,
                    "replaced": replaced,
                    "pool": self.pool,
                },
            )

    def session_lost(
        self,
        session: str,
        worker_id: int,
        pid: int | None,
        exit_kind: str,
        reinitialized: bool,
        failed_calls: int,
    ) -> None:
        if enabled(SESSION_LOST):
            execute(
                SESSION_LOST,
                {"failed_calls": failed_calls},
                {
                    "session": session,
                    "worker_id": worker_id,
                    "pid": pid,
                    "exit_kind": exit_kind,
                    "reinitialized": reinitialized,
                    "pool": self.pool,
                },
            )

    def forwarded(self, worker_id: int, pid: int, body: Any) -> None:
        """Re-emit an event a worker raised, tagged with that worker.

        The worker is not trusted: anything that is not an event is dropped,
        so a confused worker cannot break its reader.
        """
        try:
            event, measurements, metadata = body
        except (TypeError, ValueError):
            return
        if (
            type(event) is not tuple
            or not event
            or not all(type(part) is str for part in event)
            or type(measurements) is not dict
            or type(metadata) is not dict
        ):
            return
        execute(event, measurements, {**metadata, "worker_id": worker_id, "worker_pid": pid})

    def wants_size(self) -> bool:
        """Whether a pool-size event would reach anybody (its stats cost a lock)."""
        return enabled(POOL_SIZE)

    def size(self, size: int, idle: int, busy: int, queue_depth: int) -> None:
        if enabled(POOL_SIZE):
            execute(
                POOL_SIZE,
                {"size": size, "idle": idle, "busy": busy, "queue_depth": queue_depth},
                {"pool": self.pool},
            )
