"""Cancelling calls, running ones included (see docs/crash-recovery.md).

``Future.cancel()`` keeps its stdlib contract: it cancels a call that still
waits and returns False for one that runs. :meth:`snakepit.Pool.cancel`
goes further, on request (``kill=True``, the default):

* a waiting call (queued, or a retry in backoff) is taken off the queue and
  its future cancelled (a retry's future, already running, fails with
  :class:`~snakepit.errors.CallCancelledError` instead);
* a running call's future fails at once with ``CallCancelledError``; its
  worker gets SIGINT, so the call's ``finally`` blocks and context managers
  unwind (the worker raises ``KeyboardInterrupt`` in the call and then ends
  itself), and SIGKILL after the pool's ``terminate_grace`` if it is still
  there (stuck in native code, or ignoring SIGINT). The worker is replaced
  at once, without backoff.

A stop on request is not a crash: the handle's ``cancelled`` flag makes
:func:`~snakepit.pool._exits.classify_exit` call the exit ``cancelled``, and
:func:`worker_cancelled` handles it instead of the crash path, so it counts
toward no crash limit, circuit breaker, health alert or retry. The call's
arguments stay alive until the worker is gone: it may still read them while
it unwinds.

Runs under the supervisor's lock where it reads or changes its state;
futures are completed and signals sent outside it.
"""

from __future__ import annotations

import functools
import signal
from concurrent.futures import InvalidStateError
from typing import TYPE_CHECKING

from snakepit.errors import CallCancelledError

from ._handle import kill_if_alive
from ._waited import Outcome

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor
    from ._zygote import WorkerProcess

__all__ = ["cancel_call", "cancel_running", "worker_cancelled"]


def cancel_call(sup: Supervisor, future: Outcome, *, kill: bool) -> bool:
    """Cancel the call behind ``future``; whether it was cancelled (see the module)."""
    if future.done():
        return False
    with sup.lock:
        waiting = _take_waiting(sup, future)
        running = None if waiting is not None else _running_handle(sup, future)
        stop = _mark_cancelled(running) if running is not None and kill else None
    if waiting is not None:
        _cancel_waiting(sup, waiting)
        return True
    if running is not None:
        if stop is None:
            return False  # running, and not to be killed: the stdlib answer
        return _stop(sup, *stop)
    # Not (or not yet) in the queue: a call still being encoded by submit is
    # pending, and dispatch skips it once cancelled.
    return future.cancel()


def cancel_running(sup: Supervisor) -> int:
    """Cancel every running call, killing its worker (``shutdown(kill_running=True)``)."""
    with sup.lock:
        stops = [
            stop
            for handle in sup.handles
            if handle.current is not None and (stop := _mark_cancelled(handle)) is not None
        ]
    for stop in stops:
        _stop(sup, *stop)
    return len(stops)


def worker_cancelled(sup: Supervisor, handle: WorkerHandle, call: Call | None) -> None:
    """A worker stopped on request is gone: release its call, replace it (no crash)."""
    if call is not None:
        # Its future already failed (see _stop); the circuit had no verdict.
        sup.circuits.release(call.device)
        _release(sup, call)
    with sup.lock:
        handle.cancelled = False
        # A pool shutting down replaces it only if queued calls still need it.
        needed = not sup.stopping and (not sup.closed or bool(len(sup._queue) or sup._retrying))
        if needed:
            handle.restarts += 1
            sup.counters["restarts"] += 1
            sup.timers.schedule_locked(0.0, functools.partial(sup._spawn, handle))
        # Sessions pinned to this worker lost their state with it, as in a
        # crash; ``_queue`` keeps them on this position, now a fresh process.
    sup.report_size()


# ------------------------------------------------------------------ internals


def _take_waiting(sup: Supervisor, future: Outcome) -> Call | None:
    """The call of ``future`` if it waits (queue or retry backoff), taken out."""
    call = sup._queue.take(future)
    if call is not None:
        return call
    for call_id, retry in sup._retrying.items():
        if retry.outer is future:
            del sup._retrying[call_id]  # its timer finds nothing and does nothing
            return retry
    return None


def _running_handle(sup: Supervisor, future: Outcome) -> WorkerHandle | None:
    for handle in sup.handles:
        if handle.current is not None and handle.current.outer is future:
            return handle
    return None


def _mark_cancelled(handle: WorkerHandle) -> tuple[WorkerHandle, Call, WorkerProcess] | None:
    """Mark ``handle``'s running call cancelled (lock held); what to stop, or
    None when its process is already being stopped (timeout, cancel, crash)."""
    call, proc = handle.current, handle.proc
    if call is None or proc is None or handle.timed_out or handle.cancelled:
        return None
    handle.cancelled = True
    handle.state = "terminating"  # takes no further call (see _replies)
    call.deadline = None  # the monitor no longer times it out
    return handle, call, proc


def _stop(sup: Supervisor, handle: WorkerHandle, call: Call, proc: WorkerProcess) -> bool:
    """Fail the running call's future now; interrupt its worker, kill it after the grace.

    False when the call's reply completed the future first (the worker is
    stopped all the same: it was promised no further call).
    """
    error = CallCancelledError(
        f"call {call.call_id} ({call.function}) was cancelled while it ran on worker "
        f"{handle.index} (pid {proc.pid}); the worker was interrupted and is replaced",
        worker_id=handle.index,
    )
    failed = _fail(sup, call, error)
    proc.send_signal(signal.SIGINT)
    sup.timers.schedule(sup._restarts.grace, functools.partial(kill_if_alive, proc))
    return failed


def _cancel_waiting(sup: Supervisor, call: Call) -> None:
    sup.circuits.release(call.device)  # it never reached a worker
    if call.outer.cancel():
        # Waiters of concurrent.futures.wait() and as_completed() learn of a
        # cancellation only here.
        call.outer.set_running_or_notify_cancel()
    else:
        # A retry's future already runs: it cannot enter the cancelled state.
        _fail(sup, call, CallCancelledError("the call was cancelled while it waited to be retried"))
    _release(sup, call)


def _fail(sup: Supervisor, call: Call, error: CallCancelledError) -> bool:
    if call.outer.done():
        return False
    # Reported before the future completes, as every outcome is.
    sup.report.outcome(call, error)
    try:
        call.outer.set_exception(error)
    except InvalidStateError:  # the call's reply won the race
        return False
    return True


def _release(sup: Supervisor, call: Call) -> None:
    """The call's end in the counters; its arguments may go (no retry, no repro)."""
    call.keepalive.clear()
    with sup.lock:
        sup.counters["cancelled"] += 1
        if sup.closed:
            sup.idle_changed.notify_all()  # shutdown() may wait for this call
