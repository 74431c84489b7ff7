"""Starting workers: the pool's first ones together, and each restart.

Runs on the pool's monitor thread. The processes come from
:func:`~snakepit.pool._handle.start_processes` (forked by the template where
there is one, all requested at once); each started one gets the supervisor's
pidfd watch, its ``MSG_INIT`` frame and its reader thread, and one that
could not start counts as a crash (a restart with backoff is planned).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from snakepit._wire import protocol
from snakepit.errors import WorkerUnavailableError
from snakepit.zero_copy import _runtime as zero_copy

from ._direct import Channel
from ._exits import oom_kill_count
from ._handle import Started, WorkerHandle, on_process_exit, start_processes

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["spawn_workers"]


def spawn_workers(sup: Supervisor, handles: Sequence[WorkerHandle]) -> None:
    """Start a worker process in each of ``handles`` (runs on the monitor thread)."""
    starting: list[tuple[WorkerHandle, int]] = []
    with sup.lock:
        if sup.stopping:
            return
        for handle in handles:
            handle.state = "starting"
            handle.generation += 1
            handle.spawned = time.monotonic()
            starting.append((handle, handle.generation))
    oom_before = oom_kill_count()
    for handle in handles:
        handle.oom_before = oom_before
    outcomes = start_processes(handles, sup._zygote)
    for (handle, generation), outcome in zip(starting, outcomes, strict=True):
        _started(sup, handle, generation, outcome)


def _started(
    sup: Supervisor,
    handle: WorkerHandle,
    generation: int,
    outcome: Started | OSError | subprocess.SubprocessError,
) -> None:
    if isinstance(outcome, BaseException):
        # Out of file descriptors or processes: count it as a crash, so a
        # restart is planned with backoff (and the position is given up
        # on after too many), and queued calls wait no further than that.
        sup.worker_exited(
            handle,
            generation,
            None,
            init_error=WorkerUnavailableError(f"could not start a worker: {outcome}"),
        )
        return
    proc, sock, fault_log = outcome
    channel = Channel(handle, generation, proc, sock, sup.lock)
    stale = None
    with sup.lock:
        closed = sup._is_stopping()  # may have changed since the check above
        if not closed:
            handle.proc = proc
            handle.sock = sock
            handle.channel = channel
            # The last process's log, if this start overtook the handling
            # of its exit (a parked worker woken at once): that handling
            # sees another generation and returns, so nobody reads it.
            stale, handle.fault_log = handle.fault_log, fault_log
        handle.known_fns = set()
        handle.timed_out = False
        handle.cancelled = False
    if stale is not None:
        stale.close()
    if closed:
        # The pool shut down while this worker was starting.
        fault_log.close()
        sock.close()
        proc.kill()
        proc.wait()
        return
    sup._watcher.watch(proc.pid, functools.partial(on_process_exit, proc.pid, sock))
    init = (sup._init_config.blob, zero_copy.ref_of(handle.ledger_memory))
    with contextlib.suppress(OSError):
        protocol.send_frame(sock, protocol.pack(protocol.MSG_INIT, handle.index, init))
    handle.start_reader(sup, channel, sup._restarts.grace)
