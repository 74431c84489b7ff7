"""A worker's process is gone: classify the exit, clean up, fail its call, restart.

Runs on the worker's reader thread once its stream ended and the process
was reaped (or on the monitor when a start failed). The exit is classified
in one place (``_exits.classify_exit``); what follows depends on whether
the pool expected it (shutdown, a cancel), replaced the worker on purpose
(``_recycle``), or it crashed: then the crash is reported and counted, the
call it ran fails with its typed error (or is retried), its sessions are
lost, and the position restarts after its backoff or is given up.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import TYPE_CHECKING

from snakepit.errors import SnakepitError, WorkerUnavailableError
from snakepit.zero_copy import _runtime as zero_copy
from snakepit.zero_copy._runtime import collect_garbage, prune_mappings

from ._cancel import worker_cancelled
from ._exits import ExitKind, classify_exit, oom_kill_count
from ._handle import read_fault_log
from ._restarts import exit_error
from ._sessions import ended_on_purpose as _ended_on_purpose

if TYPE_CHECKING:
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor

__all__ = ["plan_restart", "worker_exited"]


def worker_exited(
    sup: Supervisor,
    handle: WorkerHandle,
    generation: int,
    returncode: int | None,
    init_error: SnakepitError | None,
) -> None:
    """The worker's process is gone (or never started): classify, clean up, restart."""
    oom_after = oom_kill_count()
    oom = handle.oom_before is not None and oom_after is not None and oom_after > handle.oom_before
    info = classify_exit(
        returncode, timed_out=handle.timed_out, oom_killed=oom, cancelled=handle.cancelled
    )
    pid = handle.pid
    with sup.lock:
        if generation != handle.generation:
            return
        call, handle.current = handle.current, None
        handle.proc = None
        handle.sock = None
        handle.channel = None
        fault_log, handle.fault_log = handle.fault_log, None
        handle.last_exit = info
        # Workers the pool itself stopped (shutdown without waiting) did
        # not crash, whatever signal ended them.
        expected = info.kind is ExitKind.cancelled or (
            sup.stopping and (info.kind is ExitKind.normal or handle.stopped_by_pool)
        )
        if call is not None and not expected:
            info = handle.last_exit = info.during_call()
        recycled = None
        if not expected and sup.recycler is not None:
            recycled = sup.recycler.exited_locked(handle, call)
        if expected:
            handle.state = "stopped"
        elif recycled is None:
            handle.state = "crashed"
            handle.init_error = init_error
            sup.counters["crashes"] += 1
            if call is None:
                # A call that kills its worker gets the crash as its error;
                # only deaths no call explains (starting, initializer, idle)
                # are a crash loop that backs off and gives the slot up.
                sup._restarts.note_crash(handle.crash_times, time.monotonic())
        sup.idle_changed.notify_all()
    native_traceback = read_fault_log(fault_log)
    if pid is not None:
        # The dead worker's references go with it: drop those it held on
        # others' blocks, unlink its own regions (our mappings of them stay
        # valid) and drop unused mappings.
        with contextlib.suppress(Exception):
            zero_copy.drop_held_references(handle.ledger)
        with contextlib.suppress(Exception):
            collect_garbage(owner_pid=pid)
        with contextlib.suppress(Exception):
            prune_mappings()
    if sup.stopping and all(other.proc is None for other in sup.handles):
        sup._watcher.close()  # the last worker of a pool shutting down is gone
    if info.kind is ExitKind.cancelled:
        ended = _ended_on_purpose(handle, "cancelled")
        sup.sessions.lost(handle, ended, generation=generation, pid=pid)
        worker_cancelled(sup, handle, call)  # stopped on request: not a crash
        return
    if expected:
        if call is not None:
            sup.finish(call, WorkerUnavailableError("the pool was shut down while the call ran"))
        sup.report_size()
        return
    if sup.recycler is not None and recycled is not None:
        ended = _ended_on_purpose(handle, recycled[0])
        sup.sessions.lost(handle, ended, generation=generation, pid=pid)
        sup.recycler.replaced(sup, handle, pid, recycled, time.monotonic() - handle.spawned)
        sup.report_size()
        return
    sup.report.worker_crashed(
        handle.index,
        pid,
        handle.device,
        info,
        call.call_id if call is not None else None,
        time.monotonic() - handle.spawned,
        call.function if call is not None else None,
    )
    sup.report_size()
    sup.health.record_crash(handle.index, handle.device, info.kind.value)
    lost = functools.partial(
        exit_error,
        info,
        timeout=call.timeout if call is not None else None,
        worker_id=handle.index,
        pid=pid,
        native_traceback=native_traceback,
    )
    sup.sessions.lost(handle, lost(), generation=generation, pid=pid)
    if call is not None:
        error = lost()
        sup.circuits.record(call.device, False)
        sup.finish(call, error)
    plan_restart(sup, handle)


def plan_restart(sup: Supervisor, handle: WorkerHandle) -> None:
    """After a crash: restart ``handle``'s worker after its backoff, or give its position up."""
    policy = sup._restarts
    with sup.lock:
        if sup.stopping:
            return
        crashes = len(handle.crash_times)
        delay: float | None = None  # stays None: no restart
        if policy.gives_up(crashes):
            handle.state = "unhealthy"
            failed = sup._queue.give_up(handle, everyone=sup._all_unhealthy())
            error = sup._unavailable()
            sup.idle_changed.notify_all()
        else:
            failed = []
            delay = policy.delay(crashes)
            handle.restarts += 1
            sup.counters["restarts"] += 1
            sup.timers.schedule_locked(delay, functools.partial(sup._spawn, handle))
    if delay is not None:
        sup.report.worker_restarting(handle.index, crashes, delay)
    for call in failed:
        sup.finish(call, error)
