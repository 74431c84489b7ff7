"""The supervisor: dispatch, replies, exits, restarts, retries and timeouts.

Data flow of one call (arrows are threads handing over)::

    caller thread                    reader thread (one per worker)
    -------------                    ------------------------------
    Pool.submit                      WorkerHandle._read
      encode arguments (codec)         unpack the reply (protocol)
      Supervisor.start_attempt  ──▶    Supervisor.worker_reply
        circuit check                    mark the worker idle, dispatch
        queue (session / device)         decode the result (codec)
        dispatch to an idle worker       finish: retry or complete the Future
        send the frame (protocol)
                                     worker death (EOF or the pidfd watcher)
    monitor thread (Timers)            Supervisor.worker_exited
      spawn and respawn workers          classify the exit, release memory
      call deadlines → terminate         fail or retry the call, plan restart
      retry and restart backoff

Callers send calls to idle workers themselves. A thread in ``Pool.call``
also reads its reply itself, in the reader's place (see ``_direct``): that
call costs no thread hand-off at all. All state below is guarded by one
lock; events are emitted, futures completed and frames sent outside it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from snakepit import _core
from snakepit._wire import codec, protocol
from snakepit.errors import (
    CircuitOpenError,
    DeviceNotAvailableError,
    SnakepitError,
    WorkerUnavailableError,
)

from ._calls import Call
from ._circuit import CircuitBreakerRegistry
from ._deaths import worker_exited
from ._direct import (
    Channel,
    Waiter,
    claim_locked,
    read_reply,
    reader_closing,
    reader_turn,
    wait_turn,
)
from ._handle import (
    WorkerHandle,
    kill_if_alive,
)
from ._health import HealthMonitor
from ._queue import CallQueue
from ._recycle import RecyclePolicy, Recycler
from ._replies import handle_reply
from ._report import Reporter
from ._repro import write_call_repro
from ._restarts import RestartPolicy
from ._retry import RetryPolicy
from ._sessions import SessionTracker
from ._shutdown import shut_down
from ._spawn import spawn_workers
from ._spin import SpinChoice
from ._timers import Action, Timers
from ._watch import ProcessWatcher
from ._zygote import Zygote

__all__ = ["Supervisor"]


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_Send = tuple[socket.socket, protocol.Frame, Call]
#: States of a worker that has finished starting (an idle timeout may already
#: have retired or parked it).


class Supervisor:
    """Runs a pool's calls on its workers and keeps the workers alive."""

    def __init__(
        self,
        name: str,
        handles: list[WorkerHandle],
        *,
        retry: RetryPolicy,
        circuits: CircuitBreakerRegistry,
        health: HealthMonitor,
        restarts: RestartPolicy,
        init_config: codec.Encoded,
        repro_dir: Path | None,
        zygote: Zygote | None = None,
        recycle: RecyclePolicy | None = None,
        session_initializer: bool = False,
        caller_spin: float = 0.0,
    ) -> None:
        self.name = name
        #: How long a caller reading its own reply polls first (see _direct.py).
        self.caller_spin = caller_spin
        #: Whether unsaturated calls poll, measured (see _spin.py).
        self.spin_choice = SpinChoice(caller_spin > 0)
        #: Seconds each function (by id) ran the last time: its callers'
        #: polls cover that much more (``protocol.poll_window``).
        self.last_runs: dict[int, float] = {}
        self._cpus = _usable_cpus()
        self._zygote = zygote  # forks workers when it can (see _zygote.py)
        self.handles = handles
        self.lock = threading.RLock()
        self.idle_changed = threading.Condition(self.lock)
        self.closed = False  # no new calls accepted
        self.stopping = False  # queue drained (or abandoned): workers stop
        self.counters = {
            "completed": 0,
            "failed": 0,
            "crashes": 0,
            "restarts": 0,
            "retries": 0,
            "recycles": 0,
            "cancelled": 0,  # calls stopped by Pool.cancel (see _cancel)
        }
        self.report = Reporter(name)
        self.timers = Timers(self.lock, self._due_deadline, "snakepit-monitor")
        self.circuits = circuits
        self.health = health
        self._queue = CallQueue(handles)
        self._retry = retry
        self._restarts = restarts
        self._repro_dir = repro_dir
        # Shared arrays among initargs are lent to every worker start, so the
        # encoded message (and its keepalive) lives as long as the pool.
        self._init_config = init_config
        # Retries waiting in backoff, by call id: shutdown must see them.
        self._retrying: dict[int, Call] = {}
        self._replies = 0
        self._watcher = ProcessWatcher(f"snakepit-watch-{name}")
        #: Idle workers' channels the monitor is to arm soon (see ``_direct``).
        self.unarmed: set[Channel] = set()
        # Workers replaced on purpose (max tasks, memory, idle): see _recycle.py.
        self.recycler = Recycler(recycle) if recycle is not None and recycle.recycles else None
        self.sessions = SessionTracker(self, reinitialize=session_initializer)

    def start(self) -> None:
        """Start the monitor thread and, on it, every worker (forked side by side)."""
        self.timers.start()
        self.timers.schedule(0.0, functools.partial(self._spawn, *self.handles))

    # ------------------------------------------------------------ dispatch

    def start_attempt(self, call: Call) -> None:
        """Circuit check → queue (session, device) → send to an idle worker."""
        call.enqueued = time.monotonic()
        try:
            self.circuits.check(call.device)
        except CircuitOpenError as exc:
            self.finish(call, exc)
            return
        with self.lock:
            handle = None
            if self.stopping:
                error: SnakepitError | None = WorkerUnavailableError("the pool was shut down")
            elif call.device is not None and not any(h.device == call.device for h in self.handles):
                error = DeviceNotAvailableError(
                    f"no worker of this pool runs on device {call.device!r}"
                )
            # An idle worker is a healthy one: the common call looks no further.
            elif (handle := self._idle_for_locked(call)) is None and self._all_unhealthy():
                error = self._unavailable()
            elif (error := self.sessions.admit(call)) is None:
                # A caller that waits reads its reply itself (see _direct.py).
                direct = call if call.caller_waits and call.attempt == 1 else None
                if handle is not None:  # what dispatch would choose, without queueing
                    if call.attempt == 1:
                        call.outer.set_running_or_notify_cancel()  # not yet returned
                    sends = self._give_locked(handle, call, direct, [])
                else:
                    self._queue.put(call)
                    sends = self._dispatch_locked(direct)
                if not call.dispatched:
                    if self.recycler is not None:
                        self.recycler.wake_locked(self, call)  # a parked worker may run it
                    if direct is not None:
                        # Its caller sleeps until the call's worker hands it the
                        # stream, or the call is over (see _direct.py).
                        call.waiter = Waiter()
                    if call.borrows_caller_memory:
                        # Left waiting: copy the arrays before ``submit`` returns
                        # (under the lock, so no reply thread sends it meanwhile).
                        call.args_blob = codec.snapshot(call.args_blob)
                call.borrows_caller_memory = False
        if error is not None:
            self.circuits.release(call.device)  # no verdict on the worker path
            self.finish(call, error)
            return
        self._send_all(sends)
        if call.read_from is not None:
            read_reply(self, call)
        elif call.waiter is not None:
            wait_turn(self, call)

    def _dispatch_locked(self, direct: Call | None = None) -> list[_Send]:
        sends: list[_Send] = []
        if self._queue.empty():
            return sends  # after most replies: nothing waits
        for handle in self.handles:
            while handle.state == "idle":
                call = self._queue.next_for(handle)
                if call is None:
                    break
                if call.attempt == 1 and not call.outer.set_running_or_notify_cancel():
                    self.circuits.release(call.device)
                    continue  # cancelled while queued
                self._give_locked(handle, call, direct, sends)
        return sends

    def _idle_for_locked(self, call: Call) -> WorkerHandle | None:
        """The idle worker dispatch would give ``call`` to with nothing
        queued, or None (a session's call, a queue, no idle worker)."""
        if call.session is not None or not self._queue.empty():
            return None
        device = call.device
        for handle in self.handles:
            if handle.state == "idle" and (device is None or device == handle.device):
                return handle
        return None

    def _give_locked(
        self, handle: WorkerHandle, call: Call, direct: Call | None, sends: list[_Send]
    ) -> list[_Send]:
        """Make ``call`` the idle ``handle``'s current call; add its frame to ``sends``."""
        blob = None if call.fn_id in handle.known_fns else call.fn_blob
        handle.known_fns.add(call.fn_id)
        handle.state = "busy"
        handle.current = call
        call.dispatched = time.monotonic()
        call.queue_time = call.dispatched - call.enqueued
        call.worker_id = handle.index
        if call.timeout is not None:
            # The monitor watches each worker's one deadline: no timer
            # per call piles up when calls finish in time.
            call.deadline = call.dispatched + call.timeout
            self.timers.deadline_locked(call.deadline)
        session = () if call.session is None else self.sessions.landed(call, handle)
        call.spin = self._spin_pays_locked()
        if call.spin and handle.cpu >= 0 and handle.cpu == _core.current_cpu():
            # Sharing a CPU, one side's polling only delays the other:
            # both sleep (see _spin.py), whatever the choice is.
            call.spin = call.spin_counts = False
            self.spin_choice.passed_locked()
        elif call.spin:
            call.spin, call.spin_counts = self.spin_choice.choose_locked()
        args_blob = call.args_blob
        message = None
        if blob is None and call.trace is None and not session and codec.inband(args_blob):
            # A known function, arguments in one small pickle (or flat with
            # shared arrays by position): the compact frame.
            if len(args_blob) == 2:
                message = protocol.pack_call(call.call_id, call.fn_id, args_blob[0], call.spin)
            elif args_blob[2] is None:
                message = protocol.pack_flat_call(
                    call.call_id, call.fn_id, args_blob[0], args_blob[3], call.spin
                )
        if message is None:
            body: tuple[Any, ...] = (call.fn_id, blob, args_blob)
            if not call.spin:
                body += (call.trace, session[0] if session else None, False)
            elif call.trace is not None or session:
                body += (call.trace, *session)
            message = protocol.pack(
                protocol.MSG_CALL, call.call_id, body, inband=codec.inband(args_blob)
            )
        if handle.sock is not None and handle.channel is not None:
            claim_locked(self, call, handle.channel, call is direct)
            sends.append((handle.sock, message, call))
        return sends

    def _spin_pays_locked(self) -> bool:
        """Whether callers and workers may poll for their next frame: only
        while every call in flight can have a core for its worker, and one
        for its caller when a thread waits for it (``Pool.call``). On a
        saturated machine a polling worker keeps the callers that would send
        it work off the CPU (4 threads calling 2 workers on 2 cores: p99
        latency 2.1-3.8 ms with polling, 1.6-2.6 ms without); a ``submit``
        caller needs no core while its call runs (a chunked map keeps its
        polling workers)."""
        cpus = self._cpus
        if 2 * len(self.handles) <= cpus:
            return True  # even every worker busy with a waiting caller fits
        needed = 0
        for handle in self.handles:
            if handle.state == "busy":
                current = handle.current
                needed += 2 if current is not None and current.caller_waits else 1
                if needed > cpus:
                    return False
        return True

    def _send_all(self, sends: list[_Send]) -> None:
        # Sent outside the lock, to the worker the call was given to: if that
        # worker died meanwhile, the send fails and its reader fails the call.
        for sock, message, call in sends:
            self.report.checked_out(call)
            try:  # noqa: SIM105 (contextlib.suppress: three more calls on every call)
                protocol.send_frame(sock, message)
            except OSError:
                pass

    # ------------------------------------------------------------ outcomes

    def finish(self, call: Call, error: BaseException | None, result: Any = None) -> None:
        """Record the attempt's outcome; retry idempotent calls; complete the future."""
        if (
            error is not None
            and not self.stopping
            and self._retry.should_retry(error, call.attempt, call.idempotent)
        ):
            delay = self._retry.delay(call.attempt)
            self.report.retrying(call, error, delay)
            with self.lock:
                if not self._is_stopping():  # may have changed since the check above
                    self.counters["retries"] += 1
                    retry = dataclasses.replace(
                        call, attempt=call.attempt + 1, deadline=None, dispatched=0.0
                    )
                    self._retrying[retry.call_id] = retry
                    self.timers.schedule_locked(delay, functools.partial(self._run_retry, retry))
                    return
            error = WorkerUnavailableError(
                "the pool was shut down before the call could be retried"
            )
        if error is not None and self._repro_dir is not None:
            # While the arguments are still alive.
            write_call_repro(self._repro_dir, f"{self.name}-{call.call_id}", call, error)
        call.keepalive.clear()
        with self.lock:
            self.counters["completed" if error is None else "failed"] += 1
            if self.closed:
                self.idle_changed.notify_all()  # shutdown() may wait for this call
        if call.outer.done():
            return
        # A call that failed before reaching a worker (circuit open, no such
        # device, ...) was never marked running.
        if (
            call.attempt == 1
            and not call.outer.running()
            and not call.outer.set_running_or_notify_cancel()
        ):
            return
        # Reported before the future completes, so a caller that got its
        # result has also had the event delivered.
        self.report.outcome(call, error)
        if error is None:
            call.outer.set_result(result)
        else:
            call.outer.set_exception(error)

    def _run_retry(self, call: Call) -> None:
        with self.lock:
            if self._retrying.pop(call.call_id, None) is None:
                return  # abandoned by shutdown
        self.start_attempt(call)

    # -------------------------------------------- what the readers report

    def worker_ready(self, handle: WorkerHandle, generation: int, pid: int) -> None:
        """The worker finished its start-up (initializer included)."""
        with self.lock:
            handle.state = "idle"
            handle.init_error = None
            if self.recycler is not None:
                self.recycler.ready_locked(self, handle)
            sends = self._dispatch_locked()
            self.idle_changed.notify_all()
        self.report.worker_started(
            handle.index, pid, handle.device, generation > 1, time.monotonic() - handle.spawned
        )
        self.report_size()
        self._send_all(sends)

    def worker_event(self, handle: WorkerHandle, pid: int, body: Any) -> None:
        """An event the worker raised: re-emitted here, tagged with the worker."""
        self.report.forwarded(handle.index, pid, body)

    def worker_retiring(self, handle: WorkerHandle, body: Any) -> None:
        """The worker is over its memory limit: replace it after its reply."""
        if self.recycler is not None:
            self.recycler.asked(self, handle, body)

    def worker_reply(self, handle: WorkerHandle, tag: str, call_id: int, body: Any) -> None:
        """A result or an error for the worker's current call (see ``_replies``)."""
        handle_reply(self, handle, tag, call_id, body)

    def reader_turn(self, channel: Channel) -> None:
        """Before each frame its reader thread reads (see ``_direct``)."""
        reader_turn(self, channel)

    def reader_closing(self, channel: Channel) -> None:
        """A reader thread is about to close its socket."""
        reader_closing(self, channel)

    def worker_exited(
        self,
        handle: WorkerHandle,
        generation: int,
        returncode: int | None,
        *,
        init_error: SnakepitError | None = None,
    ) -> None:
        """The worker's process is gone (or never started): see ``_deaths``."""
        worker_exited(self, handle, generation, returncode, init_error)

    # ----------------------------------------------------- worker lifecycle

    def _spawn(self, *handles: WorkerHandle) -> None:
        """Start a worker process in each of ``handles`` (runs on the monitor thread)."""
        spawn_workers(self, handles)

    def _is_stopping(self) -> bool:
        return self.stopping

    def _all_unhealthy(self) -> bool:
        # A loop, not all() over a generator: this runs on every call.
        for handle in self.handles:  # noqa: SIM110
            if handle.state != "unhealthy":
                return False
        return True

    def _unavailable(self) -> WorkerUnavailableError:
        causes = [h.init_error for h in self.handles if h.init_error is not None]
        detail = f"; last initializer error: {causes[-1]}" if causes else ""
        return WorkerUnavailableError(
            f"every worker crashed more than {self._restarts.max_crashes} times within "
            f"{self._restarts.crash_window} s and was not restarted{detail}"
        )

    # ------------------------------------------------------------ timeouts

    def _due_deadline(self, now: float) -> tuple[Action | None, float | None]:
        """The monitor asks (lock held): a timed-out call to end, or the next deadline."""
        wake: float | None = None
        for handle in self.handles:
            call = handle.current
            if call is None or call.deadline is None or handle.timed_out:
                continue
            if call.deadline <= now:
                return functools.partial(self._time_out, handle, call), None
            wake = call.deadline if wake is None else min(wake, call.deadline)
        return None, wake

    def _time_out(self, handle: WorkerHandle, call: Call) -> None:
        with self.lock:
            if handle.current is not call or handle.proc is None:
                return
            handle.timed_out = True
            handle.state = "terminating"
            proc = handle.proc
        proc.terminate()
        self.timers.schedule(self._restarts.grace, functools.partial(kill_if_alive, proc))

    # ------------------------------------------------------------ shutdown

    def shutdown(self, wait: bool, cancel_futures: bool, kill_running: bool = False) -> None:
        """Stop accepting calls, finish (or cancel) queued ones, stop the workers
        (see ``_shutdown``); ``kill_running`` cancels the running calls too."""
        shut_down(self, wait, cancel_futures, kill_running)

    def join_readers(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for the reader threads to finish."""
        for handle in self.handles:
            handle.join_reader(deadline - time.monotonic())

    # --------------------------------------------------------------- state

    def stats(self) -> dict[str, int]:
        """Pool size, worker states, queue depth and lifetime counters."""
        with self.lock:
            states = [handle.state for handle in self.handles]
            return {
                "size": len(self.handles),
                "idle": states.count("idle"),
                "busy": states.count("busy"),
                "starting": states.count("starting"),
                "crashed": states.count("crashed"),
                "unhealthy": states.count("unhealthy"),
                "parked": states.count("parked"),
                "queue_depth": len(self._queue),
                **self.counters,
            }

    def report_size(self) -> None:
        """Emit the pool's size and load (when somebody listens)."""
        if self.report.wants_size():
            stats = self.stats()
            self.report.size(stats["size"], stats["idle"], stats["busy"], stats["queue_depth"])
