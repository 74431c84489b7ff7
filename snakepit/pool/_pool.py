"""The pool's face: a concurrent.futures.Executor over disposable worker processes.

``Pool`` validates what the user gives, encodes arguments in the caller's
thread and hands calls to its :class:`~snakepit.pool._supervisor.Supervisor`,
which runs them on :class:`~snakepit.pool._handle.WorkerHandle` processes
(see the supervisor's module docstring for the data flow and the threads).
"""

from __future__ import annotations

import atexit
import inspect
import itertools
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Literal, overload

from snakepit import hardware
from snakepit._wire import codec
from snakepit.errors import PoolClosedError, SerializationError, SharedMemoryError
from snakepit.telemetry._propagation import carrier_for_call
from snakepit.zero_copy._runtime import threshold_bytes

from ._calls import Call, function_name
from ._cancel import cancel_call
from ._circuit import CircuitBreakerRegistry, circuits_for
from ._fallback import install as install_fallback
from ._fallback import oom_fallback as oom_fallback_for
from ._handle import WorkerHandle
from ._health import HealthMonitor
from ._options import (
    DEFAULT_OPTIONS,
    UNSET,
    CallMethods,
    CallOptions,
    P,
    PoolView,
    R,
    checked_timeout,
)
from ._recycle import RecyclePolicy
from ._restarts import RestartPolicy
from ._retry import RetryPolicy
from ._startup import abandon, check_devices, wait_started
from ._supervisor import Supervisor
from ._waited import Outcome, WaitedFuture
from ._zygote import zygote_for

__all__ = ["Pool"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_FUNCTION_CACHE_SIZE = 1024
#: How long the exit hook waits for readers to clean up after killed workers.
_EXIT_CLEANUP_SECONDS = 3.0
_pool_numbers = itertools.count(1)
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
#: Supervisors of pools dropped without a shutdown, still finishing their calls.
_dropped: set[Supervisor] = set()
_dropped_lock = threading.Lock()


@atexit.register
def _shutdown_live_pools() -> None:
    supervisors = [pool._supervisor for pool in list(_live_pools)]
    with _dropped_lock:
        supervisors += _dropped
    for supervisor in supervisors:
        supervisor.shutdown(False, True)
    # The readers unlink dead workers' regions: give them a moment, or an
    # interrupted program (Ctrl-C) leaves a worker's region in /dev/shm.
    deadline = time.monotonic() + _EXIT_CLEANUP_SECONDS
    for supervisor in supervisors:
        supervisor.join_readers(deadline)


def _release_dropped(supervisor: Supervisor) -> None:
    """Shut down the supervisor of a pool that was garbage-collected while running.

    As with ProcessPoolExecutor, the calls it accepted still finish (their
    futures may be held elsewhere); then its workers and threads end. The
    wait happens in a thread of its own: a finalizer runs wherever the
    collector does, often in a caller's thread.
    """
    if supervisor.closed:
        return

    def release() -> None:
        try:
            supervisor.shutdown(True, False)
        finally:
            with _dropped_lock:
                _dropped.discard(supervisor)

    with _dropped_lock:
        _dropped.add(supervisor)
    threading.Thread(
        target=release, name=f"snakepit-release-{supervisor.name}", daemon=True
    ).start()


class Pool(CallMethods, Executor):
    """Supervised worker processes that survive anything their calls do.

    ``workers``: number of worker processes (default: CPU count);
    ``max_workers`` is an alias, as ProcessPoolExecutor, loky and pebble
    spell it.
    ``device``: ``"auto"``, ``"cpu"``, ``"cuda:N"`` or a list of devices that
    the workers are spread over (each worker sees only its device).
    ``initializer(*initargs)`` runs once per worker start, restarts included.
    ``timeout``: default per-call timeout in seconds (None: no limit).
    ``retry``: the policy for ``idempotent=True`` calls.
    ``circuit_breaker``: off by default (None or False: every call runs, as
    a batch job wants); True for breakers with the default thresholds, which a
    service wants (calls fail fast with ``CircuitOpenError`` while workers keep
    crashing), or a :class:`CircuitBreakerRegistry` of your own.
    ``worker_max_crashes`` deaths within ``worker_crash_window`` seconds stop
    a slot from restarting (it is reported unhealthy); only deaths no call
    explains count (starting, initializer, idle): a call that kills its
    worker gets the crash as its error and the slot restarts at once.
    ``spin_seconds``: after answering, a worker polls its socket this long
    before sleeping, and so does a thread in ``call`` that waits for its reply,
    so back-to-back calls skip the cost of waking a process; 0 disables it.
    Each poll also covers a short expected wait, up to 1 ms more: a worker's,
    its caller's pause before the last call; a caller's, the function's last
    run. So a poll costs at most ``spin_seconds`` + 1 ms of CPU per call,
    and only while calls come that close together. Spinning backs off by
    itself where it does not pay: a spin that catches nothing, or a worker
    that lost its core to another process since its last spin (a machine
    without an idle core, where spinning takes CPU from the very caller it
    waits for), right after another such miss makes the worker's next waits
    sleep at once, 1 then 2, 4, ... up to 64 waits, until a spin catches a
    call again (one miss alone is a pause between bursts of calls). Nobody spins while
    the pool is saturated (fewer CPUs than busy workers plus threads waiting
    in ``call``), where polling would keep the callers that send the next
    calls off the CPU. Otherwise the pool measures: it runs its calls one way
    (polling at first) and now and then a trial of eight calls the other
    way, and switches when the other way's overhead is lower twice running
    (with another busy process on the box, a wake-up is a cheap preemption
    and polling only takes CPU). Whatever the choice, a call does not poll
    when its worker answered the last call from the CPU the call is sent
    from: sharing a CPU, one side's polling only delays the other.
    ``repro_dir``: when set, every call that fails in a worker (it raised,
    crashed or timed out) leaves a standalone script there that makes the same
    call outside snakepit (see :func:`snakepit.telemetry.write_repro`); the
    error's notes name the script.
    ``forward_logging``: records a worker logs with ``logging`` go to the
    loggers of the same names here, with ``worker_id`` and ``worker_pid`` as
    extra fields (see docs/telemetry.md, "Worker output"); False leaves the
    worker's logging alone.
    ``label_output``: what a worker prints comes out line by line, each
    prefixed with ``(worker N pid P)``; False leaves it unlabelled.
    ``preload``: modules a template process imports once and forks workers
    from (starts and restarts then take milliseconds): ``"auto"`` (numpy
    when installed), a list of module names, or None for a fresh interpreter
    per worker (see docs/crash-recovery.md, "Worker start-up").
    ``template``: ``"fresh"`` (the template is a new interpreter) or
    ``"supervisor"``: a fork of this process taken as the pool starts, so
    that workers start in milliseconds even on the pool's first call, as
    copies of this process (its imported modules and their globals; not its
    threads, open files, sockets, log handlers or exit hooks). Where that is
    not safe (another thread runs, a GPU driver is loaded) the pool logs why
    and uses a fresh template (docs/crash-recovery.md, "A template forked
    from the supervisor").
    ``max_tasks_per_child``: calls a worker process answers before it is
    replaced (after its reply; forked from the template, so cheap), as
    ProcessPoolExecutor's; None: workers live as long as the pool.
    ``max_memory_per_worker``: bytes (an int, or ``"2GiB"``, ``"512MB"``) of
    private resident memory above which a worker is replaced after its call.
    ``memory_limit_per_worker``: a hard cap on each worker's data segment
    (``RLIMIT_DATA``); a call whose allocation crosses it fails with
    :class:`~snakepit.errors.OutOfMemoryError` naming the limit, and the
    worker is replaced. ``idle_timeout``: seconds without a call after which
    a worker exits; it is started again when a call needs it (no floor).
    ``cwd``: working directory of the workers (must exist). Recycling is
    never a crash (see docs/crash-recovery.md, "Recycling workers and limits").
    ``async with Pool(...)`` shuts down without blocking the event loop.
    ``session_initializer(session, *session_initargs)`` runs in a worker
    before the first call of each session it gets, again on the new worker
    when the session's worker died (then no SessionLostError is raised; see
    docs/crash-recovery.md, "Lost sessions").
    ``oom_fallback="cpu"``: an ``idempotent=True`` call that runs out of GPU
    memory runs again on one of the pool's CPU workers (the pool needs one:
    ``device=["cuda:0", "cpu"]``); the ``("snakepit", "call", "fallback")``
    event says why (docs/zero-copy.md, "GPU out of memory").

    ``backend``: ``"local"`` (the default: workers are children of this
    process), ``"ray"``, or a configured backend such as
    :class:`snakepit.backends.RayBackend` (workers run under a supervisor in a
    Ray actor on each node; the same calls, options and errors; see
    docs/scale-out.md).

    Raises DeviceNotAvailableError for a device this machine lacks, and
    WorkerStartError when an initializer raises while the pool starts.
    """

    #: Shuts the supervisor down if the pool is dropped while running (set once started).
    _finalizer: weakref.finalize[[Supervisor], Pool] | None = None

    def __new__(cls, *args: Any, backend: object = "local", **kwargs: Any) -> Pool:
        """The local pool, or the pool class of ``backend`` (see ``snakepit.backends``)."""
        if backend == "local":
            return super().__new__(cls)
        from ._backends import pool_class_for

        made: Pool = super().__new__(pool_class_for(backend))
        return made

    def __init__(
        self,
        workers: int | None = None,
        *,
        device: str | Sequence[str] = "auto",
        initializer: Callable[..., Any] | str | None = None,
        initargs: tuple[Any, ...] = (),
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerRegistry | bool | None = None,
        health: HealthMonitor | None = None,
        worker_max_crashes: int = 5,
        worker_crash_window: float = 60.0,
        restart_backoff: tuple[float, float] = (0.0, 5.0),
        terminate_grace: float = 1.0,
        start_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        spin_seconds: float = 0.0002,
        repro_dir: str | os.PathLike[str] | None = None,
        preload: Sequence[str] | str | None = "auto",
        template: Literal["fresh", "supervisor"] = "fresh",
        session_initializer: Callable[..., Any] | str | None = None,
        session_initargs: tuple[Any, ...] = (),
        max_workers: int | None = None,
        forward_logging: bool = True,
        label_output: bool = True,
        max_tasks_per_child: int | None = None,
        max_memory_per_worker: int | str | None = None,
        memory_limit_per_worker: int | str | None = None,
        idle_timeout: float | None = None,
        cwd: str | os.PathLike[str] | None = None,
        oom_fallback: Literal["cpu"] | None = None,
        backend: object = "local",
    ) -> None:
        del backend  # chosen in __new__: another backend's class has its own __init__
        if max_workers is not None:
            if workers is not None:
                raise TypeError("give workers or max_workers (its alias), not both")
            workers = max_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
            raise TypeError(f"workers must be a whole number, not {workers!r}")
        count = (os.cpu_count() or 1) if workers is None else workers
        if count < 1:
            raise ValueError("workers must be >= 1")
        devices = [device] if isinstance(device, str) else list(device)
        if not devices:
            raise ValueError("device list is empty")
        check_devices(devices)
        fallback = oom_fallback_for(oom_fallback, devices)
        self._timeout = checked_timeout(timeout)
        recycle = RecyclePolicy.from_options(
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_worker=max_memory_per_worker,
            memory_limit_per_worker=memory_limit_per_worker,
            idle_timeout=idle_timeout,
            cwd=cwd,
        )
        self._lock = threading.Lock()
        self._functions: OrderedDict[Any, tuple[int, bytes, Any, str]] = OrderedDict()
        self._fn_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        #: Calls a map keeps in flight: enough that no worker waits for the
        #: caller to take results, few enough that inputs stay lazy.
        self._map_window = max(8, 4 * count)
        #: Names this pool in telemetry metadata.
        self.name = f"pool-{next(_pool_numbers)}"
        circuits = circuits_for(circuit_breaker)
        health = health if health is not None else HealthMonitor()
        circuits.adopt(self.name)
        health.adopt(self.name)
        init_config = {
            # Workers in another cwd still import what this process imports from its own.
            "sys_path": [p or os.getcwd() for p in sys.path if p or recycle.cwd],
            "initializer": codec.dumps_function(initializer) if initializer else None,
            "initargs": initargs,
            "session_initializer": (
                codec.dumps_function(session_initializer) if session_initializer else None
            ),
            "session_initargs": session_initargs,
            "threshold_bytes": threshold_bytes(),
            "spin_seconds": spin_seconds,
            "forward_logging": bool(forward_logging),
            "label_output": bool(label_output),
            **recycle.worker_config(),
        }
        if template == "supervisor" and recycle.memory_limit is not None:
            raise ValueError(
                'template="supervisor" cannot be combined with memory_limit_per_worker: '
                "the copy of this process a worker starts as counts against the limit"
            )
        base_env = dict(os.environ if env is None else env)
        pythonpath = base_env.get("PYTHONPATH", "")
        base_env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + pythonpath if pythonpath else "")
        # "auto" spreads workers over the GPUs found (or "cpu"); each worker's
        # environment shows it only its device (see docs/hardware.md).
        zygote = zygote_for(self.name, base_env, preload, template)
        if zygote is not None:
            zygote.prefork()  # on this thread, before any thread of the pool runs
        try:
            handles = [
                WorkerHandle(
                    index,
                    slot_device,
                    {**base_env, **hardware.worker_environment(slot_device, base_env)},
                )
                for index, slot_device in enumerate(hardware.assign_devices(devices, count))
            ]
            self._supervisor = Supervisor(
                self.name,
                handles,
                retry=retry if retry is not None else RetryPolicy(),
                circuits=circuits,
                health=health,
                restarts=RestartPolicy(
                    max_crashes=worker_max_crashes,
                    crash_window=worker_crash_window,
                    backoff=restart_backoff,
                    grace=terminate_grace,
                ),
                init_config=codec.encode(init_config),
                repro_dir=None if repro_dir is None else Path(repro_dir),
                zygote=zygote,
                recycle=recycle,
                session_initializer=session_initializer is not None,
                caller_spin=spin_seconds,
            )
        except BaseException:
            if zygote is not None:
                zygote.close()  # a template forked above
            raise
        install_fallback(self._supervisor, fallback)
        _live_pools.add(self)
        self._supervisor.start()
        try:
            wait_started(self._supervisor, start_timeout)
        except BaseException:
            # Nothing of a pool that failed to start may outlive it.
            abandon(self._supervisor)
            _live_pools.discard(self)
            raise
        # A pool dropped without shutdown() must not keep its workers and
        # threads until the interpreter exits (the atexit hook sees only
        # pools still alive).
        self._finalizer = weakref.finalize(self, _release_dropped, self._supervisor)
        self._finalizer.atexit = False

    # ----------------------------------------------------------------- calls

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    @overload
    def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> Future[Any]: ...
    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; returns a Future.

        ``fn`` may be a callable or ``"module:function"``. Every keyword goes
        to ``fn``; options for the call itself (timeout, retry, session,
        device) go through :meth:`options`.
        """
        future: Future[Any] = Future()
        self._submit(fn, args, kwargs, DEFAULT_OPTIONS, future=future)
        return future

    def _submit_waited(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Outcome:
        return self._submit(fn, args, kwargs, DEFAULT_OPTIONS, caller_waits=True)

    def options(
        self,
        *,
        timeout: float | None = UNSET,
        idempotent: bool = UNSET,
        session: str | None = UNSET,
        device: str | None = UNSET,
    ) -> PoolView:
        """A view of this pool whose calls carry these options.

        ``timeout``: seconds a call may run before its worker is terminated
        (None: no limit; default: the pool's ``timeout``). ``idempotent``: the
        call may be retried after a crash or timeout. ``session``: calls of
        one session run on one worker. ``device``: run on a worker of this
        device. See :class:`~snakepit.pool.CallOptions`.
        """
        return PoolView(self, DEFAULT_OPTIONS).options(
            timeout=timeout, idempotent=idempotent, session=session, device=device
        )

    def _submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        caller_waits: bool = False,
        future: Future[Any] | None = None,
    ) -> Outcome:
        # ``caller_waits``: the caller waits for the result at once (it may
        # read the reply itself; unless given a Future, it gets the leaner
        # WaitedFuture); ``future``: the Future to complete, made by a
        # caller that must know it before the call may block.
        timeout = options.timeout_or(self._timeout)
        idempotent, session, device = options.idempotent, options.session, options.device
        outer: Outcome = (
            (WaitedFuture() if caller_waits else Future()) if future is None else future
        )
        if self._supervisor.closed:
            raise PoolClosedError("cannot submit to a pool that was shut down")
        fn_id, fn_blob, name = self._function(fn)
        # Positional: a class called with keywords builds a dict of them and
        # unpacks it again for ``__init__`` (a third of the construction).
        call = Call(
            next(self._call_ids),  # call_id
            fn_id,
            fn_blob,
            (b"", ()),  # args_blob, set once encoded
            [],  # keepalive
            timeout,
            device,
            session,
            idempotent,
            1,  # attempt
            outer,
            name,  # function
        )
        call.caller_waits = caller_waits
        report = self._supervisor.report
        report.call_started(call)
        call.trace = carrier_for_call(self.name, call.call_id)
        try:
            # A call that may be retried is sent again later: its arrays are
            # copied now. Any other is copied only if it has to wait (queued).
            encoded = codec.encode((args, kwargs), snapshot=idempotent)
        except (SerializationError, SharedMemoryError) as exc:
            call.idempotent = False  # the same arguments would fail the same way
            self._supervisor.finish(call, exc)
            return outer
        call.serialize_time = time.monotonic() - call.submitted
        call.args_blob = encoded.blob
        call.keepalive = encoded.keepalive
        call.borrows_caller_memory = not idempotent and bool(encoded.buffers)
        report.encoded("arguments", call.serialize_time, encoded)
        self._supervisor.start_attempt(call)
        return outer

    # ----------------------------------------------------------------- state

    def stats(self) -> dict[str, int]:
        """Pool size, worker states, queue depth and lifetime counters."""
        return self._supervisor.stats()

    def health(self) -> dict[str, Any]:
        """Health status, crash history and per-worker/per-device statistics."""
        supervisor = self._supervisor
        snapshot = supervisor.health.snapshot()
        with supervisor.lock:
            snapshot["workers"] = {
                handle.index: {
                    "state": handle.state,
                    "pid": handle.pid,
                    "device": handle.device,
                    "restarts": handle.restarts,
                    "last_exit": handle.last_exit.kind.value if handle.last_exit else None,
                }
                for handle in supervisor.handles
            }
        return snapshot

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes."""
        supervisor = self._supervisor
        with supervisor.lock:
            return [
                handle.proc.pid
                for handle in supervisor.handles
                if handle.proc is not None and handle.proc.returncode is None
            ]

    def cancel(self, future: Future[Any], /, *, kill: bool = True) -> bool:
        """Cancel a call of this pool, even one that is running; whether it was.

        A call still waiting is cancelled as ``future.cancel()`` would. A
        running call, with ``kill`` (the default), fails at once with
        :class:`~snakepit.errors.CallCancelledError` (a
        ``concurrent.futures.CancelledError``); its worker is interrupted
        (SIGINT: the call's ``finally`` blocks run), killed after
        ``terminate_grace`` if still there, and replaced. That is not a crash:
        no crash limit, circuit breaker, health alert or retry counts it.
        ``kill=False`` leaves a running call alone and returns False, as
        ``future.cancel()`` does. See docs/crash-recovery.md.
        """
        return cancel_call(self._supervisor, future, kill=kill)

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, kill_running: bool = False
    ) -> None:
        """Stop accepting calls, finish (or cancel) queued ones, stop the workers.

        ``kill_running`` also stops the running calls, as :meth:`cancel` does
        (their futures fail with :class:`~snakepit.errors.CallCancelledError`),
        and implies ``cancel_futures``. Interrupted while it waits
        (``KeyboardInterrupt``), it stops the running calls the same way.
        """
        try:
            self._supervisor.shutdown(wait, cancel_futures, kill_running)
        except BaseException:
            # Ctrl-C while waiting for the running calls: stop them instead.
            self._supervisor.shutdown(True, True, kill_running=True)
            raise
        finally:
            _live_pools.discard(self)
            if self._finalizer is not None:
                self._finalizer.detach()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Shut down: wait for the calls, unless the block was left by a
        ``KeyboardInterrupt`` (or another ``BaseException`` that is no
        ``Exception``, such as ``SystemExit``): then running calls are stopped
        and the waiting ones cancelled (``kill_running=True``)."""
        abort = exc_type is not None and not issubclass(exc_type, Exception)
        self.shutdown(wait=True, cancel_futures=abort, kill_running=abort)

    async def __aenter__(self) -> Pool:
        """``async with Pool(...) as pool``: the pool itself (already started)."""
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Leave the block as ``with`` would, in a thread: the event loop keeps running."""
        import asyncio  # only a caller with an event loop pays for the import

        await asyncio.to_thread(self.__exit__, *exc_info)

    # ------------------------------------------------------------- functions

    def _function(self, fn: Callable[..., Any] | str) -> tuple[int, bytes, str]:
        """The id, serialized form and name of ``fn``, serialized once per pool."""
        key: Any = ("spec", fn) if isinstance(fn, str) else ("obj", id(fn))
        # No lock to look up: the cache's operations are atomic (keys are
        # tuples of str and int), and an entry evicted meanwhile stays valid.
        entry = self._functions.get(key)
        if entry is not None and (entry[2] is fn or isinstance(fn, str)):
            try:  # noqa: SIM105 (contextlib.suppress: three more calls on every call)
                self._functions.move_to_end(key)
            except KeyError:
                pass  # evicted by another thread: the next call serializes it again
            return entry[0], entry[1], entry[3]
        blob = codec.dumps_function(fn)
        fn_id = next(self._fn_ids)
        name = function_name(fn)
        with self._lock:
            # The entry keeps fn alive, so id(fn) cannot be reused while cached.
            self._functions[key] = (fn_id, blob, fn, name)
            while len(self._functions) > _FUNCTION_CACHE_SIZE:
                self._functions.popitem(last=False)
        return fn_id, blob, name

    def __repr__(self) -> str:
        stats = self.stats()
        return f"<snakepit.Pool size={stats['size']} idle={stats['idle']} busy={stats['busy']}>"


# ``__new__`` (which picks the backend's class) takes ``*args, **kwargs``; the
# signature users, help() and tools should see is ``__init__``'s.
_init_parameters = list(inspect.signature(Pool.__init__).parameters.values())[1:]
Pool.__signature__ = inspect.Signature(_init_parameters)  # type: ignore[attr-defined]
