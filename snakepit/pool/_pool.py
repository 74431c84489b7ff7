"""The supervisor: a concurrent.futures.Executor over disposable worker processes.

Threads:
- one reader per worker process: receives replies, completes calls, hands
  the next queued call to its worker, and notices the worker's death (EOF);
- one monitor: spawns workers (so their parent-death signal is tied to a
  long-lived thread), enforces call timeouts, runs restart and retry timers.
Callers send calls to idle workers themselves, so a call costs one thread
hand-off on the way back only.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import heapq
import itertools
import logging
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from snakepit import errors as snakepit_errors
from snakepit._wire import codec, protocol
from snakepit.errors import (
    CircuitOpenError,
    DeviceNotAvailableError,
    PoolClosedError,
    PythonError,
    SerializationError,
    SharedMemoryError,
    SnakepitError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
    WorkerUnavailableError,
    record_to_exception,
)
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import (
    CALL_EXCEPTION,
    CALL_START,
    CALL_STOP,
    CIRCUIT_CLOSE,
    CIRCUIT_HALF_OPEN,
    CIRCUIT_OPEN,
    ERROR,
    HEALTH_ALERT,
    POOL_CHECKIN,
    POOL_CHECKOUT,
    POOL_SIZE,
    RETRY_ATTEMPT,
    SERIALIZE_STOP,
    WORKER_CRASH,
    WORKER_RESTART,
    WORKER_START,
)
from snakepit.telemetry._repro import write_repro
from snakepit.zero_copy import _runtime as zero_copy
from snakepit.zero_copy._runtime import collect_garbage, prune_mappings, threshold_bytes

from ._circuit import CircuitBreakerRegistry, CircuitState
from ._exits import ExitInfo, ExitKind, classify_exit, oom_kill_count
from ._health import HealthAlert, HealthMonitor
from ._retry import RetryPolicy
from ._watch import ProcessWatcher, kill_group

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_FUNCTION_CACHE_SIZE = 1024
_pool_numbers = itertools.count(1)
_CIRCUIT_EVENTS = {
    CircuitState.OPEN: CIRCUIT_OPEN,
    CircuitState.HALF_OPEN: CIRCUIT_HALF_OPEN,
    CircuitState.CLOSED: CIRCUIT_CLOSE,
}
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _shutdown_live_pools() -> None:
    pools = list(_live_pools)
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    # The readers unlink dead workers' regions: give them a moment, or an
    # interrupted program (Ctrl-C) leaves a worker's region in /dev/shm.
    deadline = time.monotonic() + _EXIT_CLEANUP_SECONDS
    for pool in pools:
        pool._join_readers(deadline)


@dataclass(eq=False, slots=True)
class _Call:
    """One attempt at running a call on a worker."""

    call_id: int
    fn_id: int
    fn_blob: bytes
    args_blob: codec.Blob
    keepalive: list[Any]
    timeout: float | None
    device: str | None
    session: str | None
    idempotent: bool
    attempt: int
    outer: Future[Any]
    function: str = "?"
    deadline: float | None = None
    submitted: float = field(default_factory=time.monotonic)
    # Timings for telemetry (seconds); those of the last attempt.
    serialize_time: float = 0.0
    enqueued: float = 0.0
    dispatched: float = 0.0
    queue_time: float = 0.0
    python_time: float = 0.0
    deserialize_time: float = 0.0
    worker_id: int | None = None


class _Slot:
    """A worker position: the process currently in it and its history."""

    def __init__(self, index: int, device: str | None, env: dict[str, str]) -> None:
        self.index = index
        self.device = device
        self.env = env
        self.state = "starting"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.generation = 0
        self.current: _Call | None = None
        self.known_fns: set[int] = set()
        self.queue: deque[_Call] = deque()
        self.crash_times: deque[float] = deque()
        self.timed_out = False
        self.restarts = 0
        self.oom_before: int | None = None
        self.fault_log: IO[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.last_exit: ExitInfo | None = None
        self.init_error: SnakepitError | None = None
        # The worker notes here the references it holds on blocks it does not
        # own, so they can be dropped when it dies.
        self.ledger_memory = zero_copy.zeros(zero_copy.LEDGER_BYTES, "uint8")
        self.ledger = zero_copy.LeaseLedger(self.ledger_memory)
        self.spawned = 0.0  # time.monotonic() of the current process's start
        self.stopped_by_pool = False  # shutdown ended this process


#: How long the exit hook waits for readers to clean up after killed workers.
_EXIT_CLEANUP_SECONDS = 3.0
#: Drop mappings of regions that workers unlinked every this many replies.
_PRUNE_EVERY = 16
#: The monitor wakes at least this often (a bound far below threading.TIMEOUT_MAX).
_MAX_MONITOR_SLEEP = 3600.0
#: Most bytes of a worker's fault log read back (all threads' stacks).
_FAULT_LOG_LIMIT = 64 << 10


def _read_fault_log(log: IO[bytes] | None) -> str | None:
    """What the dead worker's faulthandler wrote (Python stacks at the crash)."""
    if log is None:
        return None
    with log:
        try:
            log.seek(0)
            text = log.read(_FAULT_LOG_LIMIT).decode("utf-8", "replace").strip()
        except OSError:
            return None
    return text or None


def _error_kind(error: BaseException) -> str:
    """The public snakepit class of ``error`` (``PythonError``, not ``RemoteKeyError``)."""
    for cls in type(error).__mro__:
        name: str = cls.__name__
        if getattr(snakepit_errors, name, None) is cls:
            return name
    return type(error).__name__


def _describe_error(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}>"


def _function_name(fn: Callable[..., Any] | str) -> str:
    """``module:qualname`` of a function, as telemetry names it."""
    if isinstance(fn, str):
        return fn
    target = fn.func if isinstance(fn, functools.partial) else fn
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{qualname}"


#: Timeouts longer than this (about 31 years) mean no timeout: beyond it a
#: deadline is meaningless, and threading refuses waits over TIMEOUT_MAX.
_LONGEST_TIMEOUT = 1e9


def _checked_timeout(timeout: object) -> float | None:
    """A per-call timeout in seconds, validated; None for none (or a huge one)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return None if timeout > _LONGEST_TIMEOUT else float(timeout)


def _on_process_exit(pid: int, sock: socket.socket) -> None:
    """A worker process exited: end its process group (children that still
    hold its socket), then shut the socket so its reader sees the end."""
    kill_group(pid)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _kill_if_alive(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()


class Pool(Executor):
    """Supervised worker processes that survive anything their calls do.

    ``workers``: number of worker processes (default: CPU count).
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda:N"`` or a list of devices that
    the workers are spread over (each worker sees only its device).
    ``initializer(*initargs)`` runs once per worker start, restarts included.
    ``timeout``: default per-call timeout in seconds (None: no limit).
    ``retry``: the policy for ``idempotent=True`` calls.
    ``worker_max_crashes`` crashes within ``worker_crash_window`` seconds stop
    a slot from restarting (it is reported unhealthy).
    ``spin_seconds``: after answering, a worker polls its socket this long
    before sleeping, so back-to-back calls skip the cost of waking a process
    (about 3x lower no-op latency here) for at most that much CPU per call;
    0 disables it.
    ``repro_dir``: when set, every call that fails in a worker (it raised,
    crashed or timed out) leaves a standalone script there that makes the same
    call outside snakepit (see :func:`snakepit.telemetry.write_repro`); the
    error's notes name the script.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        device: str | Sequence[str] = "auto",
        initializer: Callable[..., Any] | str | None = None,
        initargs: tuple[Any, ...] = (),
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerRegistry | None = None,
        health: HealthMonitor | None = None,
        worker_max_crashes: int = 5,
        worker_crash_window: float = 60.0,
        restart_backoff: tuple[float, float] = (0.0, 5.0),
        terminate_grace: float = 1.0,
        start_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        spin_seconds: float = 0.0002,
        repro_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        count = (os.cpu_count() or 1) if workers is None else workers
        if count < 1:
            raise ValueError("workers must be >= 1")
        devices = [device] if isinstance(device, str) else list(device)
        if not devices:
            raise ValueError("device list is empty")
        self._lock = threading.RLock()
        self._idle_changed = threading.Condition(self._lock)
        self._queue: deque[_Call] = deque()
        self._sessions: dict[str, _Slot] = {}
        self._functions: OrderedDict[Any, tuple[int, bytes, Any, str]] = OrderedDict()
        self._fn_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._closed = False  # no new calls accepted
        self._stopping = False  # queue drained (or abandoned): workers stop
        self._monitor_done = False  # workers stopped: the monitor may end
        self._timeout = _checked_timeout(timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        self._circuits = (
            circuit_breaker if circuit_breaker is not None else CircuitBreakerRegistry()
        )
        self._health = health if health is not None else HealthMonitor()
        self._max_crashes = worker_max_crashes
        self._crash_window = worker_crash_window
        self._backoff = restart_backoff
        self._grace = terminate_grace
        self._counters = {"completed": 0, "failed": 0, "crashes": 0, "restarts": 0, "retries": 0}
        self._repro_dir = None if repro_dir is None else Path(repro_dir)
        #: Names this pool in telemetry metadata.
        self.name = f"pool-{next(_pool_numbers)}"
        self._circuits.on_transition(self._on_circuit_transition)
        self._health.on_alert(self._on_health_alert)
        init_config = {
            "sys_path": [p for p in sys.path if p],
            "initializer": codec.dumps_function(initializer) if initializer else None,
            "initargs": initargs,
            "threshold_bytes": threshold_bytes(),
            "spin_seconds": spin_seconds,
        }
        # Shared arrays among initargs are lent to every worker start, so the
        # encoded message (and its keepalive) lives as long as the pool.
        self._init_config = codec.encode(init_config)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        # Retries waiting in backoff, by call id: shutdown must see them.
        self._retrying: dict[int, _Call] = {}
        self._replies = 0
        self._timer_seq = itertools.count()
        base_env = dict(os.environ if env is None else env)
        pythonpath = base_env.get("PYTHONPATH", "")
        base_env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + pythonpath if pythonpath else "")
        self._slots = []
        # SPEC §3 device affinity: "auto" spreads workers over the GPUs found
        # (or "cpu"); each worker's environment shows it only its device.
        # Imported here, not at the top: workers import this module and never
        # detect hardware (the import alone costs them ~25 ms of start-up).
        from snakepit import hardware

        for index, slot_device in enumerate(hardware.assign_devices(devices, count)):
            slot_env = {**base_env, **hardware.worker_environment(slot_device, base_env)}
            self._slots.append(_Slot(index, slot_device, slot_env))
        self._monitor_wakeup = threading.Condition(self._lock)
        self._monitor = threading.Thread(
            target=self._monitor_loop, name="snakepit-monitor", daemon=True
        )
        self._monitor.start()
        self._watcher = ProcessWatcher(f"snakepit-watch-{self.name}")
        _live_pools.add(self)
        for slot in self._slots:
            self._schedule(0.0, functools.partial(self._spawn, slot))
        self._wait_started(start_timeout)

    # ----------------------------------------------------------------- public

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; returns a Future.

        ``fn`` may be a callable or ``"module:function"``. The keyword
        arguments ``timeout``, ``idempotent``, ``session`` and ``device`` are
        per-call options and are not passed to ``fn`` (wrap ``fn`` with
        functools.partial to pass such names through).
        """
        if kwargs:
            timeout = kwargs.pop("timeout", self._timeout)
            if timeout is not self._timeout:
                timeout = _checked_timeout(timeout)
            idempotent = bool(kwargs.pop("idempotent", False))
            session = kwargs.pop("session", None)
            device = kwargs.pop("device", None)
        else:
            timeout, idempotent, session, device = self._timeout, False, None, None
        outer: Future[Any] = Future()
        if self._closed:
            raise PoolClosedError("cannot submit to a pool that was shut down")
        fn_id, fn_blob, name = self._function(fn)
        call = _Call(
            call_id=next(self._call_ids),
            fn_id=fn_id,
            fn_blob=fn_blob,
            args_blob=(b"", ()),
            keepalive=[],
            timeout=timeout,
            device=device,
            session=session,
            idempotent=idempotent,
            attempt=1,
            outer=outer,
            function=name,
        )
        if enabled(CALL_START):
            execute(
                CALL_START,
                {"monotonic_time": call.submitted, "system_time": time.time()},
                {"call_id": call.call_id, "function": name, "pool": self.name, "device": device},
            )
        try:
            encoded = codec.encode((args, kwargs))
        except (SerializationError, SharedMemoryError) as exc:
            call.idempotent = False  # the same arguments would fail the same way
            self._finish(call, exc)
            return outer
        call.serialize_time = time.monotonic() - call.submitted
        call.args_blob = encoded.blob
        call.keepalive = encoded.keepalive
        if enabled(SERIALIZE_STOP):
            execute(
                SERIALIZE_STOP,
                {
                    "duration": call.serialize_time,
                    "bytes": encoded.size,
                    "arrays": len(encoded.keepalive),
                },
                {"direction": "encode", "what": "arguments"},
            )
        self._start_attempt(call)
        return outer

    def call(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a call and wait for its result (see :meth:`submit`)."""
        return self.submit(fn, *args, **kwargs).result()

    async def acall(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Awaitable form of :meth:`call`."""
        import asyncio  # here, not at the top: workers import this module and never await

        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterable[Any]:
        """Like ``Executor.map``; ``fn`` may also be ``"module:function"``."""
        return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        """Pool size, worker states, queue depth and lifetime counters."""
        with self._lock:
            states = [slot.state for slot in self._slots]
            queued = len(self._queue) + sum(len(slot.queue) for slot in self._slots)
            return {
                "size": len(self._slots),
                "idle": states.count("idle"),
                "busy": states.count("busy"),
                "starting": states.count("starting"),
                "crashed": states.count("crashed"),
                "unhealthy": states.count("unhealthy"),
                "queue_depth": queued,
                **self._counters,
            }

    def health(self) -> dict[str, Any]:
        """Health status, crash history and per-worker/per-device statistics."""
        snapshot = self._health.snapshot()
        with self._lock:
            snapshot["workers"] = {
                slot.index: {
                    "state": slot.state,
                    "pid": slot.proc.pid if slot.proc is not None else None,
                    "device": slot.device,
                    "restarts": slot.restarts,
                    "last_exit": slot.last_exit.kind.value if slot.last_exit else None,
                }
                for slot in self._slots
            }
        return snapshot

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes."""
        with self._lock:
            return [
                slot.proc.pid
                for slot in self._slots
                if slot.proc is not None and slot.proc.returncode is None
            ]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls, finish (or cancel) queued ones, stop the workers."""
        with self._lock:
            already = self._closed
            self._closed = True
            abandoned: list[_Call] = []
            if cancel_futures or not wait:
                abandoned = list(self._queue) + [c for s in self._slots for c in s.queue]
                abandoned += self._retrying.values()
                self._retrying.clear()
                self._queue.clear()
                for slot in self._slots:
                    slot.queue.clear()
            if wait:
                self._idle_changed.wait_for(self._drained, timeout=None)
            self._stopping = True
            self._monitor_wakeup.notify_all()
        for call in abandoned:
            if call.outer.cancel():
                # Cancelled futures are "done" for concurrent.futures.wait()
                # and as_completed() only once waiters are notified.
                call.outer.set_running_or_notify_cancel()
                self._circuits.release(call.device)
            else:
                # A retry's future is already running and cannot be cancelled.
                self._finish(call, WorkerUnavailableError("the pool was shut down"))
        if already and not wait:
            return
        for slot in self._slots:
            self._stop_worker(slot, graceful=wait)
        _live_pools.discard(self)
        current = threading.current_thread()
        if wait:
            # Readers finish each worker's clean-up (its regions, references).
            for slot in self._slots:
                if slot.reader is not None and slot.reader is not current:
                    slot.reader.join(timeout=5.0)
        # Only now may the monitor end: workers get PR_SET_PDEATHSIG when the
        # thread that started them exits, which would kill them mid-shutdown.
        with self._lock:
            self._monitor_done = True
            self._monitor_wakeup.notify_all()
        if wait and current is not self._monitor:
            self._monitor.join(timeout=5.0)
        if wait:
            self._watcher.close()
        # A breaker registry or health monitor may outlive this pool.
        self._circuits.remove_listener(self._on_circuit_transition)
        self._health.remove_listener(self._on_health_alert)
        if enabled(POOL_SIZE):
            # Gauges fed by size events must not keep the last live count.
            execute(
                POOL_SIZE, {"size": 0, "idle": 0, "busy": 0, "queue_depth": 0}, {"pool": self.name}
            )
        with contextlib.suppress(Exception):
            prune_mappings()

    # ----------------------------------------------------------- functions

    def _function(self, fn: Callable[..., Any] | str) -> tuple[int, bytes, str]:
        """The id, serialized form and name of ``fn``, serialized once per pool."""
        key: Any = ("spec", fn) if isinstance(fn, str) else ("obj", id(fn))
        with self._lock:
            entry = self._functions.get(key)
            if entry is not None and (isinstance(fn, str) or entry[2] is fn):
                self._functions.move_to_end(key)
                return entry[0], entry[1], entry[3]
        blob = codec.dumps_function(fn)
        fn_id = next(self._fn_ids)
        name = _function_name(fn)
        with self._lock:
            # The entry keeps fn alive, so id(fn) cannot be reused while cached.
            self._functions[key] = (fn_id, blob, fn, name)
            while len(self._functions) > _FUNCTION_CACHE_SIZE:
                self._functions.popitem(last=False)
        return fn_id, blob, name

    # ---------------------------------------------------------- execution

    def _start_attempt(self, call: _Call) -> None:
        """Circuit check → checkout (device affinity) → send."""
        call.enqueued = time.monotonic()
        try:
            self._circuits.check(call.device)
        except CircuitOpenError as exc:
            self._finish(call, exc)
            return
        with self._lock:
            if self._stopping:
                error: SnakepitError | None = WorkerUnavailableError("the pool was shut down")
            elif call.device is not None and not any(s.device == call.device for s in self._slots):
                error = DeviceNotAvailableError(
                    f"no worker of this pool runs on device {call.device!r}"
                )
            elif self._all_unhealthy():
                error = self._unavailable()
            else:
                error = None
                if call.session is not None:
                    self._session_slot(call.session).queue.append(call)
                else:
                    self._queue.append(call)
                sends = self._dispatch_locked()
        if error is not None:
            self._circuits.release(call.device)  # no verdict on the worker path
            self._finish(call, error)
            return
        self._send_all(sends)

    def _session_slot(self, session: str) -> _Slot:
        slot = self._sessions.get(session)
        if slot is None or slot.state == "unhealthy":
            healthy = [s for s in self._slots if s.state != "unhealthy"]
            # Spread sessions: fewest sessions first, then idle, then shortest queue.
            pinned = {id(s): 0 for s in healthy}
            for held in self._sessions.values():
                if id(held) in pinned:
                    pinned[id(held)] += 1
            slot = min(healthy, key=lambda s: (pinned[id(s)], s.state != "idle", len(s.queue)))
            self._sessions[session] = slot
        return slot

    def _next_call_locked(self, slot: _Slot) -> _Call | None:
        if slot.queue:
            return slot.queue.popleft()
        for index, call in enumerate(self._queue):
            if call.device is None or call.device == slot.device:
                del self._queue[index]
                return call
        return None

    def _dispatch_locked(self) -> list[tuple[socket.socket, protocol.Frame, _Call]]:
        sends = []
        for slot in self._slots:
            while slot.state == "idle":
                call = self._next_call_locked(slot)
                if call is None:
                    break
                if call.attempt == 1 and not call.outer.set_running_or_notify_cancel():
                    self._circuits.release(call.device)
                    continue  # cancelled while queued
                fn_id = call.fn_id
                blob = None if fn_id in slot.known_fns else call.fn_blob
                slot.known_fns.add(fn_id)
                slot.state = "busy"
                slot.current = call
                call.dispatched = time.monotonic()
                call.queue_time = call.dispatched - call.enqueued
                call.worker_id = slot.index
                if call.timeout is not None:
                    # The monitor watches each slot's one deadline: no timer
                    # per call piles up when calls finish in time.
                    call.deadline = time.monotonic() + call.timeout
                    self._monitor_wakeup.notify_all()
                message = protocol.pack(
                    protocol.MSG_CALL,
                    call.call_id,
                    (fn_id, blob, call.args_blob),
                )
                if slot.sock is not None:
                    sends.append((slot.sock, message, call))
        return sends

    def _send_all(self, sends: list[tuple[socket.socket, protocol.Frame, _Call]]) -> None:
        # Sent outside the lock, to the worker the call was given to: if that
        # worker died meanwhile, the send fails and its reader fails the call.
        for sock, message, call in sends:
            if enabled(POOL_CHECKOUT):
                execute(
                    POOL_CHECKOUT,
                    {"queue_time": call.queue_time},
                    {"call_id": call.call_id, "worker_id": call.worker_id, "pool": self.name},
                )
            with contextlib.suppress(OSError):
                protocol.send_frame(sock, message)

    def _finish(self, call: _Call, error: BaseException | None, result: Any = None) -> None:
        """Record the attempt's outcome; retry idempotent calls; complete the future."""
        if (
            error is not None
            and not self._stopping
            and self._retry.should_retry(error, call.attempt, call.idempotent)
        ):
            delay = self._retry.delay(call.attempt)
            if enabled(RETRY_ATTEMPT):
                execute(
                    RETRY_ATTEMPT,
                    {"attempt": call.attempt + 1, "delay": delay},
                    {"call_id": call.call_id, "kind": _error_kind(error), "pool": self.name},
                )
            with self._lock:
                if not self._is_stopping():  # may have changed since the check above
                    self._counters["retries"] += 1
                    retry = dataclasses.replace(call, attempt=call.attempt + 1, deadline=None)
                    self._retrying[retry.call_id] = retry
                    self._schedule_locked(delay, functools.partial(self._run_retry, retry))
                    return
            error = WorkerUnavailableError(
                "the pool was shut down before the call could be retried"
            )
        if error is not None and self._repro_dir is not None:
            self._write_repro(call, error)  # while the arguments are still alive
        call.keepalive.clear()
        with self._lock:
            self._counters["completed" if error is None else "failed"] += 1
            if self._closed:
                self._idle_changed.notify_all()  # shutdown() may wait for this call
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
        self._report_outcome(call, error)
        if error is None:
            call.outer.set_result(result)
        else:
            call.outer.set_exception(error)

    def _run_retry(self, call: _Call) -> None:
        with self._lock:
            if self._retrying.pop(call.call_id, None) is None:
                return  # abandoned by shutdown
        self._start_attempt(call)

    def _write_repro(self, call: _Call, error: BaseException) -> None:
        """Leave a script reproducing a call that failed in a worker."""
        if not isinstance(error, (PythonError, WorkerError)) or isinstance(
            error, WorkerUnavailableError
        ):
            return  # failed before any worker ran it: nothing to reproduce
        assert self._repro_dir is not None
        try:
            function = codec.decode(call.fn_blob)
            args, kwargs = codec.decode(call.args_blob)
            path = write_repro(
                self._repro_dir,
                function=function,
                args=args,
                kwargs=kwargs,
                error=error,
                call_id=f"{self.name}-{call.call_id}",
            )
        except Exception:
            # A reproduction is a courtesy: it must never change the outcome.
            logging.getLogger(__name__).warning(
                "could not write a repro for call %s", call.call_id, exc_info=True
            )
            return
        error.add_note(f"snakepit: reproduce with: python {path / 'repro.py'}")

    def _report_outcome(self, call: _Call, error: BaseException | None) -> None:
        duration = time.monotonic() - call.submitted
        metadata: dict[str, Any] = {
            "call_id": call.call_id,
            "function": call.function,
            "pool": self.name,
            "worker_id": call.worker_id,
        }
        if error is None:
            if enabled(CALL_STOP):
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
                    metadata,
                )
            return
        kind = _error_kind(error)
        reason = _describe_error(error)
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

    def _on_circuit_transition(self, name: str, old: CircuitState, new: CircuitState) -> None:
        event = _CIRCUIT_EVENTS.get(new)
        if event is not None and enabled(event):
            execute(event, {}, {"circuit": name, "previous": str(old), "pool": self.name})

    def _on_health_alert(self, alert: HealthAlert) -> None:
        if enabled(HEALTH_ALERT):
            subject = (
                f"worker {alert.worker_id}" if alert.worker_id is not None else str(alert.device)
            )
            execute(
                HEALTH_ALERT,
                {"value": alert.count, "threshold": alert.threshold},
                {
                    "alert": alert.kind,
                    "severity": "critical" if alert.kind == "repeated_segfaults" else "warning",
                    "subject": subject,
                    "message": alert.message,
                    "device": alert.device,
                    "pool": self.name,
                },
            )

    def _report_size(self) -> None:
        if enabled(POOL_SIZE):
            stats = self.stats()
            execute(
                POOL_SIZE,
                {
                    "size": stats["size"],
                    "idle": stats["idle"],
                    "busy": stats["busy"],
                    "queue_depth": stats["queue_depth"],
                },
                {"pool": self.name},
            )

    # -------------------------------------------------------- worker lifecycle

    def _spawn(self, slot: _Slot) -> None:
        """Start a worker process in ``slot`` (runs on the monitor thread)."""
        with self._lock:
            if self._stopping:
                return
            slot.state = "starting"
            slot.generation += 1
            generation = slot.generation
            slot.spawned = time.monotonic()
        opened: list[Any] = []
        try:
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            opened += (parent_sock, child_sock)
            # The worker's faulthandler writes here where native code crashed
            # (or where a timed-out call was stuck); read back after it died.
            fault_log = tempfile.TemporaryFile(prefix="snakepit-fault-")  # noqa: SIM115 - closed when the worker exits
            opened.append(fault_log)
            slot.oom_before = oom_kill_count()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snakepit.worker",
                    str(child_sock.fileno()),
                    str(os.getpid()),
                    str(fault_log.fileno()),
                ],
                pass_fds=(child_sock.fileno(), fault_log.fileno()),
                env=slot.env,
                stdin=subprocess.DEVNULL,
                # Its own process group: the worker and everything it starts
                # are killed together.
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            # Out of file descriptors or processes: count it as a crash, so a
            # restart is planned with backoff (and the slot is given up on
            # after too many), and fail the queued calls' wait no further.
            for resource in opened:
                with contextlib.suppress(OSError):
                    resource.close()
            self._on_worker_exit(
                slot,
                generation,
                None,
                init_error=WorkerUnavailableError(f"could not start a worker: {exc}"),
            )
            return
        child_sock.close()
        with self._lock:
            closed = self._is_stopping()  # may have changed since the check above
            if not closed:
                slot.proc = proc
                slot.sock = parent_sock
                slot.fault_log = fault_log
            slot.known_fns = set()
            slot.timed_out = False
        if closed:
            # The pool shut down while this worker was starting.
            fault_log.close()
            parent_sock.close()
            proc.kill()
            proc.wait()
            return
        self._watcher.watch(proc.pid, functools.partial(_on_process_exit, proc.pid, parent_sock))
        init = (self._init_config.blob, zero_copy.ref_of(slot.ledger_memory))
        with contextlib.suppress(OSError):
            protocol.send_frame(parent_sock, protocol.pack(protocol.MSG_INIT, slot.index, init))
        reader = threading.Thread(
            target=self._reader_loop,
            args=(slot, generation, proc, parent_sock),
            name=f"snakepit-reader-{slot.index}",
            daemon=True,
        )
        slot.reader = reader
        reader.start()

    def _reader_loop(
        self, slot: _Slot, generation: int, proc: subprocess.Popen[bytes], sock: socket.socket
    ) -> None:
        init_error: SnakepitError | None = None
        reader = protocol.FrameReader(sock)
        try:
            while True:
                payload = reader.read()
                if payload is None:
                    break
                tag, ident, blob = protocol.unpack(payload)
                if tag == protocol.MSG_READY:
                    with self._lock:
                        slot.state = "idle"
                        slot.init_error = None
                        sends = self._dispatch_locked()
                        self._idle_changed.notify_all()
                    self._report_worker_start(slot, generation, proc.pid)
                    self._send_all(sends)
                elif tag == protocol.MSG_EVENT:
                    self._forwarded_event(slot, proc.pid, blob)
                elif tag == protocol.MSG_INIT_FAILED:
                    init_error = record_to_exception(codec.decode(blob))
                elif tag in (protocol.MSG_RESULT, protocol.MSG_ERROR):
                    self._on_reply(slot, tag, ident, blob)
                else:
                    raise protocol.ProtocolError(f"unexpected message {tag!r}")
        except BaseException:
            # A broken stream, or anything else this thread did not expect, is
            # treated like a crash: the worker is replaced and its call failed.
            # This thread must reach _reap, or the slot stays "idle" for good.
            with contextlib.suppress(OSError):
                proc.kill()
            if not isinstance(sys.exc_info()[1], (OSError, protocol.ProtocolError)):
                logging.getLogger(__name__).exception("snakepit reader failed")
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        self._reap(slot, generation, proc, init_error)

    def _join_readers(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for the reader threads to finish."""
        current = threading.current_thread()
        for slot in self._slots:
            reader = slot.reader
            if reader is not None and reader is not current:
                reader.join(timeout=max(0.0, deadline - time.monotonic()))

    def _report_worker_start(self, slot: _Slot, generation: int, pid: int) -> None:
        if enabled(WORKER_START):
            execute(
                WORKER_START,
                {"startup_time": time.monotonic() - slot.spawned},
                {
                    "worker_id": slot.index,
                    "pid": pid,
                    "device": slot.device,
                    "restart": generation > 1,
                    "pool": self.name,
                },
            )
        self._report_size()

    def _forwarded_event(self, slot: _Slot, pid: int, body: Any) -> None:
        """Re-emit an event a worker raised, tagged with that worker."""
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
            return  # not an event: a confused worker must not break the reader
        execute(event, measurements, {**metadata, "worker_id": slot.index, "worker_pid": pid})

    def _on_reply(self, slot: _Slot, tag: str, call_id: int, blob: Any) -> None:
        try:
            blob, python_seconds = blob
            call_python_time = float(python_seconds)
        except (TypeError, ValueError) as exc:
            raise protocol.ProtocolError(f"malformed reply to call {call_id}") from exc
        with self._lock:
            call = slot.current
            if call is None or call.call_id != call_id:
                return
            slot.current = None
            if slot.timed_out:
                # The reply beat the timeout's kill: the call succeeded, but
                # this process is being terminated and gets no further call.
                slot.state = "terminating"
            else:
                slot.state = "idle" if not self._stopping else "draining"
            sends = self._dispatch_locked() if not self._stopping else []
            if self._closed:
                self._idle_changed.notify_all()  # shutdown() waits for the drain
        now = time.monotonic()
        call.python_time = call_python_time
        self._replies += 1
        if self._replies % _PRUNE_EVERY == 0:
            # Workers unlink regions they no longer need; our mappings of
            # them would pin their pages in /dev/shm.
            with contextlib.suppress(Exception):
                prune_mappings()
        if enabled(POOL_CHECKIN):
            execute(
                POOL_CHECKIN,
                {"busy_time": now - call.dispatched},
                {"call_id": call.call_id, "worker_id": slot.index, "pool": self.name},
            )
        self._send_all(sends)
        self._health.record_call(slot.index, slot.device, True, now - call.submitted)
        self._circuits.record(call.device, True)
        # Results keep a block reference per array for as long as they live.
        try:
            value = codec.decode(blob, keep=True)
            outcome = None if tag == protocol.MSG_RESULT else record_to_exception(value)
        except BaseException as exc:
            error = (
                exc
                if isinstance(exc, SerializationError)
                else SerializationError(
                    f"cannot deserialize the reply: {type(exc).__name__}: {exc}",
                    direction="decode",
                )
            )
            self._finish(call, error)
            return
        call.deserialize_time = time.monotonic() - now
        if enabled(SERIALIZE_STOP):
            execute(
                SERIALIZE_STOP,
                {"duration": call.deserialize_time, "bytes": codec.blob_size(blob), "arrays": 0},
                {
                    "direction": "decode",
                    "what": "result" if tag == protocol.MSG_RESULT else "error",
                },
            )
        if outcome is None:
            self._finish(call, None, value)
        else:
            self._finish(call, outcome)

    def _reap(
        self,
        slot: _Slot,
        generation: int,
        proc: subprocess.Popen[bytes],
        init_error: SnakepitError | None,
    ) -> None:
        try:
            returncode = proc.wait(timeout=max(self._grace, 1.0))
        except subprocess.TimeoutExpired:
            proc.kill()  # closed its socket but did not exit: finish it
            returncode = proc.wait()
        # Whatever the worker started dies with it.
        kill_group(proc.pid)
        self._on_worker_exit(slot, generation, returncode, init_error=init_error)

    def _on_worker_exit(
        self,
        slot: _Slot,
        generation: int,
        returncode: int | None,
        *,
        init_error: SnakepitError | None = None,
    ) -> None:
        oom_after = oom_kill_count()
        oom = slot.oom_before is not None and oom_after is not None and oom_after > slot.oom_before
        info = classify_exit(returncode, timed_out=slot.timed_out, oom_killed=oom)
        pid = slot.proc.pid if slot.proc is not None else None
        with self._lock:
            if generation != slot.generation:
                return
            call, slot.current = slot.current, None
            slot.proc = None
            slot.sock = None
            fault_log, slot.fault_log = slot.fault_log, None
            slot.last_exit = info
            # Workers the pool itself stopped (shutdown without waiting) did
            # not crash, whatever signal ended them.
            expected = self._stopping and (info.kind is ExitKind.normal or slot.stopped_by_pool)
            if expected:
                slot.state = "stopped"
            else:
                slot.state = "crashed"
                slot.init_error = init_error
                self._counters["crashes"] += 1
                now = time.monotonic()
                slot.crash_times.append(now)
                while slot.crash_times and now - slot.crash_times[0] > self._crash_window:
                    slot.crash_times.popleft()
            self._idle_changed.notify_all()
        native_traceback = _read_fault_log(fault_log)
        if pid is not None:
            # The dead worker's references go with it: drop those it held on
            # others' blocks, unlink its own regions (our mappings of them stay
            # valid) and drop unused mappings.
            with contextlib.suppress(Exception):
                zero_copy.drop_held_references(slot.ledger)
            with contextlib.suppress(Exception):
                collect_garbage(owner_pid=pid)
            with contextlib.suppress(Exception):
                prune_mappings()
        if self._stopping and all(other.proc is None for other in self._slots):
            self._watcher.close()  # the last worker of a pool shutting down is gone
        if expected:
            if call is not None:
                self._finish(
                    call, WorkerUnavailableError("the pool was shut down while the call ran")
                )
            self._report_size()
            return
        if enabled(WORKER_CRASH):
            execute(
                WORKER_CRASH,
                {"uptime": time.monotonic() - slot.spawned},
                {
                    "worker_id": slot.index,
                    "pid": pid,
                    "device": slot.device,
                    "exit_kind": info.kind.value,
                    "signal": info.signal,
                    "exit_code": info.exit_code,
                    "call_id": call.call_id if call is not None else None,
                    "pool": self.name,
                },
            )
        self._report_size()
        self._health.record_crash(slot.index, slot.device, info.kind.value)
        if call is not None:
            error: WorkerError
            if info.kind is ExitKind.timeout:
                error = WorkerTimeoutError(
                    f"call exceeded its {call.timeout} s timeout; worker {slot.index} "
                    f"(pid {pid}) was terminated",
                    timeout=call.timeout or 0.0,
                    worker_id=slot.index,
                    remote_traceback=native_traceback,
                )
            else:
                error = WorkerCrashedError(
                    f"worker {slot.index} (pid {pid}) died during the call: {info.description}",
                    exit_kind=info.kind.value,
                    signal=info.signal,
                    exit_code=info.exit_code,
                    worker_id=slot.index,
                    remote_traceback=native_traceback,
                )
            self._circuits.record(call.device, False)
            self._finish(call, error)
        self._plan_restart(slot)

    def _plan_restart(self, slot: _Slot) -> None:
        with self._lock:
            if self._stopping:
                return
            crashes = len(slot.crash_times)
            delay: float | None = None  # stays None: no restart
            if crashes > self._max_crashes:
                slot.state = "unhealthy"
                failed = list(slot.queue)
                slot.queue.clear()
                for name, pinned in list(self._sessions.items()):
                    if pinned is slot:
                        del self._sessions[name]
                if self._all_unhealthy():
                    failed += list(self._queue)
                    self._queue.clear()
                error = self._unavailable()
                self._idle_changed.notify_all()
            else:
                failed = []
                base, cap = self._backoff
                delay = 0.0 if crashes <= 1 else min(cap, max(base, 0.05) * 2 ** (crashes - 2))
                slot.restarts += 1
                self._counters["restarts"] += 1
                self._schedule_locked(delay, lambda: self._spawn(slot))
        if delay is not None and enabled(WORKER_RESTART):
            execute(
                WORKER_RESTART,
                {"delay": delay},
                {"worker_id": slot.index, "crashes": crashes, "pool": self.name},
            )
        for call in failed:
            self._finish(call, error)

    def _is_stopping(self) -> bool:
        return self._stopping

    def _all_unhealthy(self) -> bool:
        return all(slot.state == "unhealthy" for slot in self._slots)

    def _unavailable(self) -> WorkerUnavailableError:
        causes = [s.init_error for s in self._slots if s.init_error is not None]
        detail = f"; last initializer error: {causes[-1]}" if causes else ""
        return WorkerUnavailableError(
            f"every worker crashed more than {self._max_crashes} times within "
            f"{self._crash_window} s and was not restarted{detail}"
        )

    def _check_timeout(self, slot: _Slot, call: _Call) -> None:
        with self._lock:
            if slot.current is not call or slot.proc is None:
                return
            slot.timed_out = True
            slot.state = "terminating"
            proc = slot.proc
        proc.terminate()
        self._schedule(self._grace, functools.partial(_kill_if_alive, proc))

    def _stop_worker(self, slot: _Slot, *, graceful: bool) -> None:
        with self._lock:
            proc, sock = slot.proc, slot.sock
            if slot.state != "unhealthy":
                slot.state = "draining"
            slot.stopped_by_pool = True
        if proc is None:
            return
        if graceful and sock is not None:
            with contextlib.suppress(OSError):
                protocol.send_frame(sock, protocol.pack(protocol.MSG_SHUTDOWN, 0, None))
            try:
                proc.wait(timeout=self._grace + 1.0)
                return
            except subprocess.TimeoutExpired:
                pass
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)

    def _drained(self) -> bool:
        if self._queue or self._retrying or any(slot.queue for slot in self._slots):
            return False
        return all(slot.current is None for slot in self._slots)

    def _wait_started(self, timeout: float) -> None:
        with self._lock:
            self._idle_changed.wait_for(
                lambda: all(s.state in ("idle", "unhealthy") for s in self._slots),
                timeout=timeout,
            )

    # --------------------------------------------------------------- timers

    def _schedule(self, delay: float, action: Callable[[], Any]) -> None:
        with self._lock:
            self._schedule_locked(delay, action)

    def _schedule_locked(self, delay: float, action: Callable[[], Any]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), action))
        self._monitor_wakeup.notify_all()

    def _next_action_locked(self) -> tuple[Callable[[], Any] | None, float | None]:
        """The monitor's next job if one is due, else how long to sleep (None: until woken)."""
        now = time.monotonic()
        wake: float | None = None
        for slot in self._slots:
            call = slot.current
            if call is None or call.deadline is None or slot.timed_out:
                continue
            if call.deadline <= now:
                return functools.partial(self._check_timeout, slot, call), None
            wake = call.deadline if wake is None else min(wake, call.deadline)
        if self._timers:
            if self._timers[0][0] <= now:
                return heapq.heappop(self._timers)[2], None
            wake = self._timers[0][0] if wake is None else min(wake, self._timers[0][0])
        return None, None if wake is None else wake - now

    def _monitor_loop(self) -> None:
        # Workers die with this thread (their parent-death signal is tied to
        # it), so nothing may end it but shutdown.
        while True:
            try:
                with self._lock:
                    while True:
                        action, wait = self._next_action_locked()
                        if action is not None:
                            break
                        if self._monitor_done:
                            return
                        if wait is not None:
                            wait = min(max(wait, 0.0), _MAX_MONITOR_SLEEP)
                        self._monitor_wakeup.wait(timeout=wait)
                action()
            except Exception:
                logging.getLogger(__name__).exception("snakepit monitor action failed")

    def __repr__(self) -> str:
        stats = self.stats()
        return f"<snakepit.Pool size={stats['size']} idle={stats['idle']} busy={stats['busy']}>"
