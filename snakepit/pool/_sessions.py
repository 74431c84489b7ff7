"""Sessions that say when they are lost (docs/crash-recovery.md, "Lost sessions").

A session lives in the worker process that ran its calls: what they kept in
globals is its state. :class:`CallQueue` pins a session to a worker
*position*; this module remembers which *process* of that position holds the
session's state (its generation), and what happens when that process ends:

* without a ``session_initializer``: the calls of the session that were
  submitted before the loss and had not started (queued, or waiting to be
  retried) fail with :class:`~snakepit.errors.SessionLostError`; when none
  did, the next call of the session does. Either way the loss is reported
  once, and later calls start a fresh session;
* with one: nothing fails; the worker runs ``session_initializer(name,
  *session_initargs)`` before the session's first call on the new process.

Either way a ``snakepit.session.lost`` event records the loss. Guarded by the
supervisor's lock; errors are delivered outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from snakepit.errors import (
    ExitKind,
    SessionLostError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
)

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["SessionTracker", "ended_on_purpose"]


@dataclass(slots=True)
class _Session:
    """What the tracker knows of one session name."""

    handle: WorkerHandle | None = None
    generation: int | None = None  # the process holding its state; None: none does
    newest: int = 0  # highest call id of the session seen so far
    cause: BaseException | None = None  # what ended the worker of its last loss
    worker_id: int = 0
    pid: int | None = None
    lost_before: int = 0  # calls with ids up to this were submitted before the loss
    owed: bool = False  # no call has been told of the last loss yet


def _exit_kind(cause: BaseException) -> str:
    if isinstance(cause, WorkerCrashedError):
        return cause.exit_kind
    if isinstance(cause, WorkerTimeoutError):
        return ExitKind.timeout.value
    kind = getattr(cause, "exit_kind", None)
    return str(kind) if kind else ExitKind.killed.value


class SessionTracker:
    """Which process holds each session, and the losses still to report."""

    def __init__(self, supervisor: Supervisor, *, reinitialize: bool) -> None:
        self._supervisor = supervisor
        #: The pool has a session initializer: a lost session is rebuilt.
        self.reinitialize = reinitialize
        self._sessions: dict[str, _Session] = {}

    def admit(self, call: Call) -> SessionLostError | None:
        """The error a session call fails with before it is queued, or None.

        Lock held. A call submitted before its session was lost fails (a
        retry included: it must not run silently without its state), and so
        does the first call after a loss that no call was told of.
        """
        name = call.session
        if name is None:
            return None
        entry = self._sessions.get(name)
        if entry is None:
            entry = self._sessions[name] = _Session()
        if entry.cause is not None and (call.call_id <= entry.lost_before or entry.owed):
            entry.owed = False
            return self._error(name, entry)
        entry.newest = max(entry.newest, call.call_id)
        return None

    def landed(self, call: Call, handle: WorkerHandle) -> tuple[str, ...]:
        """A session call is handed to ``handle``'s process (lock held).

        Returns what the call frame carries for the worker: the session's name
        when the worker must initialize sessions it has not seen, else nothing.
        """
        name = call.session
        assert name is not None
        entry = self._sessions.get(name)
        if entry is None:
            entry = self._sessions[name] = _Session()
        entry.handle = handle
        entry.generation = handle.generation
        return (name,) if self.reinitialize else ()

    def lost(
        self,
        handle: WorkerHandle,
        cause: BaseException,
        *,
        generation: int | None = None,
        pid: int | None = None,
    ) -> None:
        """``handle``'s process (``generation``, default the current one) ended
        or is being ended: the sessions it held are lost because of ``cause``.

        For every path that ends a worker, crash or not (the supervisor's
        crash path, cancelling a running call, recycling): call it with the
        error that ended the worker, before the worker's next process starts
        and before the ended call is retried. Calling it again for the same
        process does nothing. Call it without the supervisor's lock held: it
        fails the session's waiting calls, which completes their futures.
        """
        sup = self._supervisor
        failed: list[tuple[Call, SessionLostError]] = []
        events: list[tuple[str, int]] = []
        with sup.lock:
            gen = handle.generation if generation is None else generation
            pid = handle.pid if pid is None else pid
            for name, entry in self._sessions.items():
                if entry.handle is not handle or entry.generation != gen:
                    continue
                entry.generation = None  # no process holds its state any more
                if self.reinitialize:
                    events.append((name, 0))
                    continue
                entry.cause = cause
                entry.worker_id = handle.index
                entry.pid = pid
                entry.lost_before = entry.newest
                waiting = [c for c in handle.queue if c.session == name]
                for call in waiting:
                    handle.queue.remove(call)
                    failed.append((call, self._error(name, entry)))
                entry.owed = not waiting
                events.append((name, len(waiting)))
        kind = _exit_kind(cause)
        for name, count in events:
            sup.report.session_lost(name, handle.index, pid, kind, self.reinitialize, count)
        for call, error in failed:
            sup.circuits.release(call.device)  # never reached a worker: no verdict
            sup.finish(call, error)

    def _error(self, name: str, entry: _Session) -> SessionLostError:
        cause = entry.cause
        assert cause is not None
        error = SessionLostError(
            session=name, exit_kind=_exit_kind(cause), pid=entry.pid, worker_id=entry.worker_id
        )
        error.__cause__ = cause
        return error


def ended_on_purpose(handle: WorkerHandle, why: str) -> WorkerError:
    """The cause a session lost to a worker the pool ended on purpose carries
    (a cancelled call, a recycle): its ``exit_kind`` says which."""
    error = WorkerError(
        f"worker {handle.index} was ended on purpose ({why}): the state of its sessions went "
        "with it",
        worker_id=handle.index,
    )
    error.exit_kind = "cancelled" if why == "cancelled" else "recycled"  # type: ignore[attr-defined]
    return error
