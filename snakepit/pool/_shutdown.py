"""A pool's shutdown: stop taking calls, drain or abandon the queue, stop the workers.

Runs on the thread that called ``Pool.shutdown`` (or the exit hook); the
supervisor's state is changed under its lock, futures completed outside it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from snakepit.errors import WorkerUnavailableError
from snakepit.zero_copy._runtime import prune_mappings

from ._cancel import cancel_running
from ._direct import stop_locked
from ._handle import stop_process

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["shut_down"]


def shut_down(sup: Supervisor, wait: bool, cancel_futures: bool, kill_running: bool) -> None:
    """Stop accepting calls, finish (or cancel) queued ones, stop the workers.

    ``kill_running`` cancels the running calls too (see ``_cancel``).
    """
    with sup.lock:
        already = sup.closed
        sup.closed = True
        abandoned: list[Call] = []
        if cancel_futures or kill_running or not wait:
            abandoned = sup._queue.take_all() + list(sup._retrying.values())
            sup._retrying.clear()
    if kill_running:
        cancel_running(sup)
    with sup.lock:
        if wait:
            sup.idle_changed.wait_for(lambda: _drained(sup), timeout=None)
        sup.stopping = True
        sup.timers.wake_locked()
    for call in abandoned:
        if call.outer.cancel():
            # Cancelled futures are "done" for concurrent.futures.wait()
            # and as_completed() only once waiters are notified.
            call.outer.set_running_or_notify_cancel()
            sup.circuits.release(call.device)
        else:
            # A retry's future is already running and cannot be cancelled.
            sup.finish(call, WorkerUnavailableError("the pool was shut down"))
    if already and not wait:
        return
    for handle in sup.handles:
        _stop_worker(sup, handle, graceful=wait)
    if wait:
        # Readers finish each worker's clean-up (its regions, references).
        for handle in sup.handles:
            handle.join_reader(5.0)
    if sup._zygote is not None:
        sup._zygote.close()  # after the readers: it reports their workers' exits
    # Only now may the monitor end: workers get PR_SET_PDEATHSIG when the
    # thread that started them exits, which would kill them mid-shutdown.
    sup.timers.finish()
    if wait:
        sup.timers.join(5.0)
    if wait or all(handle.proc is None for handle in sup.handles):
        # Without waiting, the last worker's exit closes the watcher; with
        # none left to exit (parked, given up on), nothing else would.
        sup._watcher.close()
    # Gauges fed by size events must not keep the last live count.
    sup.report.size(0, 0, 0, 0)
    with contextlib.suppress(Exception):
        prune_mappings()


def _stop_worker(sup: Supervisor, handle: WorkerHandle, *, graceful: bool) -> None:
    with sup.lock:
        proc, sock = handle.proc, handle.sock
        if handle.state != "unhealthy":
            handle.state = "draining"
        handle.stopped_by_pool = True
        stop_locked(handle.channel)  # a reader sleeping on an idle worker reads to the end
    if proc is not None:
        stop_process(proc, sock, graceful=graceful, grace=sup._restarts.grace)


def _drained(sup: Supervisor) -> bool:
    if sup._queue or sup._retrying:
        return False
    return all(handle.current is None for handle in sup.handles)
