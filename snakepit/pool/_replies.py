"""A worker's reply, on the reader thread: the supervisor's half of a call's way back.

Kept lean: a no-op call's round trip is mostly this and the wake-ups around
it. The worker gets its next call before the reply is decoded; health and
circuit verdicts are recorded before the future completes; events are built
only when somebody listens (see docs/telemetry.md).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import InvalidStateError
from typing import TYPE_CHECKING, Any

from snakepit._wire import codec, protocol
from snakepit.errors import DeviceError, SerializationError
from snakepit.errors._remote import record_to_exception
from snakepit.zero_copy._runtime import prune_mappings

from . import _fallback as fallback
from ._spin import MOST_RUNS_KEPT

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["decode_reply", "handle_reply"]

#: Drop mappings of regions that workers unlinked every this many replies.
_PRUNE_EVERY = 16


def handle_reply(sup: Supervisor, handle: WorkerHandle, tag: str, call_id: int, body: Any) -> None:
    """A result or an error for ``handle``'s current call: free the worker
    (and give it the next call), record the verdicts, complete the call."""
    try:
        blob, python_seconds, cpu = body
        call_python_time = float(python_seconds)
        if type(cpu) is not int:
            raise TypeError(f"cpu {cpu!r}")
    except (TypeError, ValueError) as exc:
        raise protocol.ProtocolError(f"malformed reply to call {call_id}") from exc
    now = time.monotonic()
    with sup.lock:
        call = handle.current
        if call is None or call.call_id != call_id:
            return
        handle.current = None
        handle.cpu = cpu
        if call.spin_counts and call.attempt == 1:
            # Waiting in the queue is not the call's overhead (a retry's
            # ``submitted`` is its first attempt's: not counted at all).
            overhead = now - call.submitted - call.queue_time - call_python_time
            sup.spin_choice.record_locked(call.spin, overhead, call.poll_lost)
        recycler = sup.recycler
        retiring = False
        if handle.timed_out or handle.cancelled:
            # The reply beat the timeout's (or the cancellation's) kill: the
            # call ended, but this process is being stopped and gets no
            # further call.
            handle.state = "terminating"
        else:
            retiring = recycler is not None and recycler.after_reply_locked(sup, handle)
            if not retiring:  # else replaced after this reply (see _recycle.py)
                handle.state = "idle" if not sup.stopping else "draining"
        sends = sup._dispatch_locked() if not sup.stopping else []
        if sup.closed:
            sup.idle_changed.notify_all()  # shutdown() waits for the drain
    call.python_time = call_python_time
    last_runs = sup.last_runs
    if len(last_runs) >= MOST_RUNS_KEPT and call.fn_id not in last_runs:
        last_runs.clear()  # functions made per call (lambdas): start over
    last_runs[call.fn_id] = call_python_time
    sup._replies += 1
    if sup._replies % _PRUNE_EVERY == 0:
        # Workers unlink regions they no longer need; our mappings of
        # them would pin their pages in /dev/shm.
        with contextlib.suppress(Exception):
            prune_mappings()
    sup.report.checked_in(call, handle.index, now - call.dispatched)
    if sends:
        sup._send_all(sends)
    if retiring and recycler is not None:
        recycler.retire(sup, handle)
    sup.health.record_call(handle.index, handle.device, True, now - call.submitted)
    sup.circuits.record(call.device, True)
    try:
        value, outcome = decode_reply(tag, blob)
    except (SerializationError, DeviceError) as error:
        sup.finish(call, error)
        return
    call.deserialize_time = time.monotonic() - now
    if sup.report.wants_decoded():
        what = "result" if outcome is None else "error"
        sup.report.decoded(what, call.deserialize_time, codec.blob_size(blob))
    if outcome is None:
        _succeeded(sup, call, value)
    elif not fallback.take(sup, call, outcome):  # oom_fallback: on the CPU instead
        sup.finish(call, outcome)


def _succeeded(sup: Supervisor, call: Call, value: Any) -> None:
    """``sup.finish(call, None, value)`` for a call a worker ran (so its future
    is running): no retry, no repro, the future's state read only for events."""
    call.keepalive.clear()
    with sup.lock:
        sup.counters["completed"] += 1
        if sup.closed:
            sup.idle_changed.notify_all()  # shutdown() may wait for this call
    if sup.report.wants_outcome():
        if call.outer.done():
            return
        # Before the future completes: a caller that has its result has also
        # had the event delivered.
        sup.report.outcome(call, None)
    try:  # noqa: SIM105 (contextlib.suppress: three more calls on every reply)
        call.outer.set_result(value)
    except InvalidStateError:
        pass  # completed meanwhile (shutdown)


def decode_reply(tag: str, blob: Any) -> tuple[Any, BaseException | None]:
    """The value of a ``MSG_RESULT`` reply, or the exception of a ``MSG_ERROR``.

    Returns ``(value, None)`` or ``(record, exception)``; a reply that does
    not decode raises :class:`~snakepit.errors.SerializationError`. Results
    keep a block reference per array for as long as they live.
    """
    try:
        value = codec.decode(blob, keep=True)
        if tag == protocol.MSG_RESULT:
            return value, None
        return value, record_to_exception(value)
    except (SerializationError, DeviceError):  # DeviceError: a CUDA result not openable here
        raise
    except BaseException as exc:
        raise SerializationError(
            f"cannot deserialize the reply: {type(exc).__name__}: {exc}",
            direction="decode",
        ) from exc
