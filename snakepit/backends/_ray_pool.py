"""``RayPool``: the driver side of ``Pool(backend="ray")``.

The driver keeps what is about a *call*: the queue, session pinning to a
host, the circuit breaker, the health monitor, retries after a host loss,
telemetry. Each host (:class:`~snakepit.backends._host.SnakepitHost`, a Ray
actor) keeps what is about a *process*: its local pool classifies worker
exits by ``waitpid``, enforces per-call timeouts, restarts workers with
backoff, retries idempotent calls after a worker crash and holds sessions'
worker state. Two threads of the driver's own do the work Ray hands over:

* the completion thread: Ray's callbacks (``ObjectRef.future()``) only enqueue;
  this thread decodes replies, re-emits the host's events on the driver's
  bus (with ``node_id``), finishes futures and starts the next calls;
* the monitor thread: every ``poll_interval`` it drains idle hosts' events
  (which doubles as their liveness probe) and kills a host whose call ran
  far past its timeout (the backstop: the host enforces timeouts itself).

A host's death (``ActorDiedError`` and kin, see
:func:`~snakepit.backends._ray_errors.classify_ray_error`) fails its calls
with ``WorkerCrashedError(exit_kind="lost")`` (retried when idempotent), its
sessions are lost, and the driver starts a replacement after the pool's
restart backoff.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snakepit._wire import codec
from snakepit.errors import (
    CallCancelledError,
    DeviceMismatchError,
    PoolClosedError,
    SerializationError,
    SessionLostError,
    SharedMemoryError,
    SnakepitError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool._circuit import CircuitBreakerRegistry, circuits_for
from snakepit.pool._health import HealthMonitor
from snakepit.pool._options import CallOptions, checked_timeout
from snakepit.pool._pool import Pool, _pool_numbers
from snakepit.pool._retry import RetryPolicy
from snakepit.telemetry import _bus

from ._host import packed_request, portable_blob, unpacked_reply
from ._ray_data import adopt_result, payload_for
from ._ray_env import import_ray
from ._ray_errors import classify_ray_error
from ._ray_hosts import (
    Host,
    RayCall,
    emit_host_events,
    host_lost_reported,
    kill_hosts,
    listened_by_driver,
    probe_array,
)
from ._ray_state import host_records, monitor, pool_health, pool_stats, worker_records

if TYPE_CHECKING:
    from ._ray import RayBackend

__all__ = ["RayPool"]

_STOP = object()


@dataclass(slots=True)
class _SessionPin:
    host: int
    generation: int
    lost: BaseException | None = None


class RayPool(Pool):
    """``Pool(backend="ray")``: the same calls, options and errors, on Ray.

    Made by ``Pool(..., backend="ray")`` or ``Pool(..., backend=RayBackend(...))``;
    the arguments are :class:`~snakepit.Pool`'s. ``workers`` is the number of
    worker processes in all (``workers_per_host`` per host actor); the
    options a host's local pool understands (``initializer``, ``device``,
    ``memory_limit_per_worker``, ``session_initializer``...) apply on its node.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        backend: object = "ray",
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerRegistry | bool | None = None,
        health: HealthMonitor | None = None,
        restart_backoff: tuple[float, float] = (0.0, 5.0),
        terminate_grace: float = 1.0,
        start_timeout: float = 60.0,
        max_workers: int | None = None,
        session_initializer: Callable[..., Any] | str | None = None,
        **local_options: Any,
    ) -> None:
        from snakepit.pool._backends import resolve

        config: RayBackend = resolve(backend)  # type: ignore[assignment]
        if max_workers is not None:
            if workers is not None:
                raise TypeError("give workers or max_workers (its alias), not both")
            workers = max_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
            raise TypeError(f"workers must be a whole number, not {workers!r}")
        self._config = config
        self._started_ray = config.connect()
        ray = import_ray()
        count = int(ray.cluster_resources().get("CPU", 1)) if workers is None else workers
        if count < 1:
            raise ValueError("workers must be >= 1")
        self._timeout = checked_timeout(timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        self._backoff = restart_backoff
        self._grace = terminate_grace
        self._reinitialize = session_initializer is not None
        self.name = f"pool-{next(_pool_numbers)}"
        self._circuits = circuits_for(circuit_breaker)
        self._health = health if health is not None else HealthMonitor()
        self._circuits.adopt(self.name)
        self._health.adopt(self.name)
        # Pool._function's cache, shared by name with the local pool.
        self._lock = threading.Lock()
        self._functions: OrderedDict[Any, tuple[int, bytes, Any, str]] = OrderedDict()
        self._fn_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._map_window = max(8, 4 * count)
        self._closed = False
        self._counters = {"completed": 0, "failed": 0, "retries": 0, "lost": 0}
        self._waiting: deque[RayCall] = deque()
        self._calls: dict[int, RayCall] = {}
        self._by_future: weakref.WeakKeyDictionary[Future[Any], RayCall] = (
            weakref.WeakKeyDictionary()
        )
        self._sessions: dict[str, _SessionPin] = {}
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._node_id = ray.get_runtime_context().get_node_id()
        per = config.workers_per_host
        local_options.pop("backend", None)
        self._local = {
            **local_options,
            "retry": self._retry,
            "restart_backoff": restart_backoff,
            "terminate_grace": terminate_grace,
            "start_timeout": start_timeout,
            "session_initializer": session_initializer,
        }
        sizes = [min(per, count - start) for start in range(0, count, per)]
        self._hosts = [Host(index=i, first_slot=i * per, size=size) for i, size in enumerate(sizes)]
        self._actor_class = config.host_class()
        self._probe = probe_array()
        self._threads = [
            threading.Thread(
                target=self._complete_loop, name=f"snakepit-{self.name}-ray", daemon=True
            ),
            threading.Thread(
                target=self._monitor_loop, name=f"snakepit-{self.name}-poll", daemon=True
            ),
        ]
        self._wake = threading.Event()
        try:
            self._start_all(start_timeout)
        except BaseException:
            self._closed = True
            kill_hosts(self._hosts)
            raise
        for thread in self._threads:
            thread.start()
        self._finalizer: weakref.finalize[Any, Any] = weakref.finalize(
            self, kill_hosts, self._hosts
        )

    # ------------------------------------------------------------ hosts

    def _host_config(self, host: Host) -> bytes:
        import cloudpickle

        encoded = codec.encode(self._probe, snapshot=False)
        probe = (portable_blob(encoded.blob), [int(v) for v in self._probe[:4]])
        host.listened = listened_by_driver()
        config = {
            **self._local,
            "workers": host.size,
            "probe": probe,
            "listening": tuple(host.listened),
        }
        return bytes(cloudpickle.dumps(config))

    def _create(self, host: Host) -> Any:
        """Create ``host``'s actor (a new generation) and ask it to start."""
        host.generation += 1
        host.state = "starting"
        name = host.actor_name = f"snakepit:{self.name}:{host.index}:{host.generation}"
        sys_path = list(sys.path) if self._config.ship_sys_path else []
        host.actor = self._actor_class.options(**self._config.host_options(name)).remote(
            name, sys_path
        )
        return host.actor.start.remote(self._host_config(host))

    def _start_all(self, start_timeout: float) -> None:
        ray = import_ray()
        refs = [self._create(host) for host in self._hosts]
        try:
            records = ray.get(refs, timeout=start_timeout)
        except Exception as exc:
            if type(exc).__name__ == "GetTimeoutError":
                raise WorkerStartError(
                    reason=f"Ray did not place and start the pool's hosts within "
                    f"{start_timeout} s (not enough CPUs or resources in the cluster?)"
                ) from exc
            raise classify_ray_error(exc) from exc
        for host, record in zip(self._hosts, records, strict=True):
            self._started(host, record)
            if host.state != "ready":
                assert host.error is not None
                raise host.error

    def _started(self, host: Host, record: tuple[Any, ...]) -> None:
        status, info, error, cause = record
        if info is not None:
            host.node_id = info["node_id"]
            host.node_ip = info["node_ip"]
            host.pid = info["pid"]
            host.worker_pids = list(info["worker_pids"])
            host.local = host.node_id == self._node_id
            host.same_memory = bool(info["same_memory"]) and host.local
        if status == "ok":
            host.state = "ready"
            host.error = None
            host.losses = 0
            return
        if cause is not None:
            error.__cause__ = cause
        host.state = "failed"
        host.error = error

    def _restart(self, host: Host, generation: int) -> None:
        """Start a replacement for a lost host (after the restart backoff)."""
        with self._lock:
            if self._closed or host.generation != generation:
                return
            ref = self._create(host)
        gen = host.generation
        ref.future().add_done_callback(lambda f: self._done.put(("start", host, gen, f)))

    def _host_lost(self, host: Host, generation: int, error: BaseException) -> None:
        """``host`` (of ``generation``) is gone: its sessions are lost, a new one starts."""
        with self._lock:
            if host.generation != generation or host.state in ("lost", "failed"):
                return
            host.state = "lost"
            host.losses += 1
            self._counters["lost"] += 1
            for pin in self._sessions.values():
                if pin.host == host.index and pin.generation == generation:
                    pin.lost = error
            delay = min(self._backoff[1], self._backoff[0] * 2 ** (host.losses - 1))
            actor, host.actor = host.actor, None
        host_lost_reported(self, host, error)
        dead = Host(host.index, 0, 0, actor=actor, pid=host.pid, local=host.local)

        def replace() -> None:
            # In a thread of its own: the kill may wait for the process to end.
            kill_hosts([dead])
            time.sleep(delay)
            self._restart(host, generation)

        threading.Thread(target=replace, name=f"snakepit-{self.name}-replace", daemon=True).start()

    # ------------------------------------------------------------ calls

    def _submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        caller_waits: bool = False,
        future: Future[Any] | None = None,
    ) -> Future[Any]:
        if self._closed:
            raise PoolClosedError("cannot submit to a pool that was shut down")
        fn_id, fn_blob, name = self._function(fn)
        outer: Future[Any] = Future() if future is None else future
        call = RayCall(
            call_id=next(self._call_ids),
            fn_id=fn_id,
            fn_blob=fn_blob,
            function=name,
            args=args,
            kwargs=kwargs,
            timeout=options.timeout_or(self._timeout),
            idempotent=options.idempotent,
            session=options.session,
            device=options.device,
            outer=outer,
            caller_thread=threading.get_ident() if caller_waits else None,
        )
        self._by_future[outer] = call
        self._admit(call)
        # Only now, on this thread: a call sent later (queued) or retried is
        # the completion thread's, as every ``submit`` is.
        call.caller_thread = None
        if call.ref is not None:
            self._get_reply(call)
        return outer

    def _get_reply(self, call: RayCall) -> None:
        """``ray.get`` of the first attempt, on the thread that waits for it:
        no hop through the completion thread. An interrupt hands the reply
        to that thread after all, and propagates."""
        ray = import_ray()
        ref, call.ref = call.ref, None
        host = self._hosts[call.host] if call.host is not None else None
        if host is None:
            return
        generation = call.generation
        reply: Future[Any] = Future()
        try:
            reply.set_result(ray.get(ref))
        except KeyboardInterrupt:
            self._reply_later(call, host, generation, ref)
            raise
        except Exception as exc:  # Ray's own errors: classified by _replied
            reply.set_exception(exc)
        self._replied(call, host, generation, reply)

    def _reply_later(self, call: RayCall, host: Host, generation: int, ref: Any) -> None:
        ref.future().add_done_callback(
            lambda f: self._done.put(("call", call, host, generation, f))
        )

    def _admit(self, call: RayCall) -> None:
        """Check the circuit and the session, then queue and start what can start."""
        try:
            self._circuits.check(call.device)
        except SnakepitError as exc:
            self._finish(call, error=exc)
            return
        lost = None
        with self._lock:
            pin = self._sessions.get(call.session) if call.session is not None else None
            if pin is not None and pin.lost is not None:
                lost, pin.lost = pin.lost, None
                del self._sessions[call.session]  # type: ignore[arg-type]
            self._waiting.append(call)
        if lost is not None and not self._reinitialize and call.attempt == 1:
            with self._lock:
                self._waiting.remove(call)
            self._circuits.release(call.device)
            kind = getattr(lost, "exit_kind", "lost")
            error = SessionLostError(session=call.session or "", exit_kind=kind)
            error.__cause__ = lost
            self._finish(call, error=error)
            return
        self._pump()

    def _pick(self, call: RayCall) -> Host | None:
        """The host for ``call`` now (lock held), or None when it must wait."""
        if call.session is not None:
            pin = self._sessions.get(call.session)
            if pin is not None:
                host = self._hosts[pin.host]
                ok = host.state == "ready" and host.generation == pin.generation
                return host if ok and host.has_room() else None
        ready = [h for h in self._hosts if h.state == "ready" and h.has_room()]
        if not ready:
            return None
        host = min(ready, key=lambda h: len(h.running) / h.size)
        if call.session is not None:
            self._sessions[call.session] = _SessionPin(host.index, host.generation)
        return host

    def _pump(self) -> None:
        """Send every waiting call that has a host with room."""
        sends: list[tuple[RayCall, Host]] = []
        dead: list[RayCall] = []
        with self._lock:
            if not any(h.state in ("ready", "starting", "lost") for h in self._hosts):
                dead, self._waiting = list(self._waiting), deque()
            for call in list(self._waiting):
                host = self._pick(call)
                if host is None:
                    continue
                self._waiting.remove(call)
                if call.attempt == 1 and not call.outer.set_running_or_notify_cancel():
                    self._circuits.release(call.device)
                    continue
                host.running.add(call.call_id)
                self._calls[call.call_id] = call
                call.host, call.generation = host.index, host.generation
                sends.append((call, host))
        for call in dead:
            reasons = "; ".join(str(h.error) for h in self._hosts if h.error is not None)
            self._finish(call, error=WorkerUnavailableError(reason=f"every host failed: {reasons}"))
        for call, host in sends:
            self._send(call, host)

    def _send(self, call: RayCall, host: Host) -> None:
        try:
            payload = payload_for(call, host, self.name)
        except (SerializationError, SharedMemoryError, DeviceMismatchError) as exc:
            self._settle(call, host, error=exc)
            return
        options = (call.timeout, call.idempotent, call.session, call.device)
        receiver = os.getpid() if host.same_memory else None
        call.started = time.monotonic()
        listened = listened_by_driver()
        # Sent when it changed since the host last heard: most requests carry None.
        listening = None if listened == host.listened else tuple(listened)
        host.listened = listened
        request = (call.call_id, call.fn_id, call.fn_blob, payload, options, receiver, listening)
        try:
            ref = host.actor.run.remote(packed_request(request))
        except Exception as exc:
            self._settle(call, host, error=classify_ray_error(exc, node_id=host.node_id))
            return
        if call.caller_thread == threading.get_ident() and call.attempt == 1:
            call.ref = ref  # its caller gets it (see _get_reply)
            return
        self._reply_later(call, host, call.generation, ref)

    # ------------------------------------------------------------ replies

    def _complete_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is _STOP:
                return
            try:
                if item[0] == "call":
                    self._replied(*item[1:])
                else:
                    self._host_started(*item[1:])
            except BaseException as exc:  # never let the thread die
                _bus.execute(("snakepit", "error"), {}, {"pool": self.name, "error": repr(exc)})

    def _host_started(self, host: Host, generation: int, future: Future[Any]) -> None:
        try:
            record = future.result()
        except BaseException as exc:
            record = ("err", None, classify_ray_error(exc, node_id=host.node_id), None)
        with self._lock:
            if host.generation != generation:
                return
            self._started(host, record)
        self._pump()

    def _replied(self, call: RayCall, host: Host, generation: int, future: Future[Any]) -> None:
        try:
            status, value, cause, events = unpacked_reply(future.result())
        except BaseException as exc:
            error = classify_ray_error(exc, worker_id=host.first_slot, node_id=host.node_id)
            if isinstance(error, WorkerCrashedError):
                self._host_lost(host, generation, error)
            self._settle(call, host, error=error)
            return
        emit_host_events(self, host, events)
        if status == "ok":
            how, payload = value
            try:
                result = (
                    codec.decode(payload, keep=True) if how == "codec" else adopt_result(payload)
                )
            except SerializationError as exc:
                self._settle(call, host, error=exc)
                return
            self._settle(call, host, result=result)
            return
        if cause is not None:
            value.__cause__ = cause
        if isinstance(value, WorkerError):
            value.add_note(f"host {host.index} on node {host.node_id}")
        self._settle(call, host, error=value)

    def _settle(
        self,
        call: RayCall,
        host: Host,
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """An attempt ended: record it, retry it, or finish the call."""
        with self._lock:
            host.running.discard(call.call_id)
            self._calls.pop(call.call_id, None)
        call.keepalive = []
        crash = isinstance(error, (WorkerCrashedError, WorkerTimeoutError))
        duration = time.monotonic() - call.submitted
        self._health.record_call(host.first_slot, call.device, not crash, duration)
        if isinstance(error, (SessionLostError, WorkerUnavailableError, CallCancelledError)):
            self._circuits.release(call.device)
        else:
            self._circuits.record(call.device, not crash)
        lost = isinstance(error, WorkerCrashedError) and error.exit_kind == "lost"
        if lost and self._retry.should_retry(error, call.attempt, call.idempotent):  # type: ignore[arg-type]
            delay = self._retry.delay(call.attempt)
            call.attempt += 1
            self._counters["retries"] += 1
            timer = threading.Timer(delay, self._admit, (call,))
            timer.daemon = True
            timer.start()
        else:
            self._finish(call, result=result, error=error)
        self._pump()

    def _finish(
        self, call: RayCall, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        outer = call.outer
        call.args, call.kwargs, call.objects = (), {}, {}
        with self._lock:
            self._counters["completed" if error is None else "failed"] += 1
        if outer.done():
            return
        if error is None:
            outer.set_result(result)
        else:
            outer.set_exception(error)

    # ------------------------------------------------------------ monitor

    # ------------------------------------------------------------ state

    def _monitor_loop(self) -> None:
        monitor(self)

    def stats(self) -> dict[str, int]:
        """Worker states summed over the hosts, queue depth, lifetime counters."""
        return pool_stats(self)

    def health(self) -> dict[str, Any]:
        """Health status and history, with each worker's host and node."""
        return pool_health(self)

    def workers(self) -> list[tuple[str | None, int]]:
        """``(node_id, pid)`` of every live worker, on every node."""
        return [(node, pid) for node, pid, _ in worker_records(self._hosts)]

    def worker_pids(self) -> list[int]:
        """Pids of the live workers on this machine's node (see :meth:`workers`)."""
        return [pid for _, pid, local in worker_records(self._hosts) if local]

    def hosts(self) -> list[dict[str, Any]]:
        """One record per host: index, actor name, state, node, pid, generation, slots."""
        return host_records(self._hosts)

    def cancel(self, future: Future[Any], /, *, kill: bool = True) -> bool:
        """Cancel a call, even a running one (as :meth:`snakepit.Pool.cancel`)."""
        call = self._by_future.get(future)
        if call is None or future.done():
            return False
        with self._lock:
            waiting = call in self._waiting
            if waiting:
                self._waiting.remove(call)
        if waiting:
            self._circuits.release(call.device)
            if not future.cancel():
                self._finish(call, error=CallCancelledError())
            return True
        if not kill or call.host is None:
            return False
        host = self._hosts[call.host]
        if host.actor is None:
            return False
        ray = import_ray()
        try:
            cancelled = bool(ray.get(host.actor.cancel.remote(call.call_id, True), timeout=30))
        except Exception:
            return False
        if cancelled:
            self._finish(call, error=CallCancelledError(worker_id=host.first_slot))
        return cancelled

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, kill_running: bool = False
    ) -> None:
        """Stop accepting calls, finish (or cancel) the others, stop the hosts."""
        with self._lock:
            already = self._closed
            self._closed = True
            waiting = list(self._waiting) if (cancel_futures or kill_running) else []
        for call in waiting:
            self.cancel(call.outer)
        if kill_running:
            for call in list(self._calls.values()):
                self.cancel(call.outer, kill=True)
        if wait:
            for call in list(self._waiting) + list(self._calls.values()):
                with contextlib.suppress(BaseException):  # cancelled: fine
                    call.outer.exception()
        if already:
            return
        self._wake.set()
        ray = import_ray()
        stops = [h.actor.stop.remote(kill_running) for h in self._hosts if h.actor is not None]
        with contextlib.suppress(Exception):  # a host that cannot stop is killed below
            ray.get(stops, timeout=30 if wait else 5)
        kill_hosts(self._hosts)
        for host in self._hosts:
            host.actor, host.state = None, "stopped"
        self._done.put(_STOP)
        self._finalizer.detach()
        for call in list(self._waiting):
            self._finish(call, error=PoolClosedError("the pool was shut down"))
        if self._started_ray:
            ray.shutdown()

    def __repr__(self) -> str:
        ready = sum(h.state == "ready" for h in self._hosts)
        return f"<snakepit.Pool backend=ray hosts={ready}/{len(self._hosts)}>"
