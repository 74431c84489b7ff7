"""``SnakepitHost``: the Ray actor that runs a local snakepit pool on its node.

A host runs no user code. It owns a local :class:`snakepit.Pool` (the same
supervisor as ``backend="local"``: ``waitpid`` crash classification,
timeouts, restarts with backoff, sessions, memory limits), and the driver's
:class:`~snakepit.backends._ray_pool.RayPool` sends it calls. Its workers are
its children, so their deaths are classified exactly as on one machine; only
the host's own death (``lost``) is left to Ray to notice.

The class is plain Python: :mod:`snakepit.backends._ray` wraps it with
``ray.remote`` (``max_restarts=0``, ``max_task_retries=0``: the driver is
the only restart and retry policy) and creates it threaded, so ``run``,
``cancel`` and ``drain`` of several calls proceed at once.

Wire records (plain tuples, pickled by Ray):

* ``start(config_blob) -> ("ok" | "err", info, error, cause)``
* ``run((call_id, fn_id, fn_blob, args, options, receiver, listening))
  -> (status, value, cause, events)``: one tuple, because Ray serializes
  each argument of an actor call on its own (seven arguments cost a no-op
  call about a third more than one); ``options`` is
  ``(timeout, idempotent, session, device)``
  where ``status`` is ``"ok"`` (``value`` the result) or ``"err"``
  (``value`` a snakepit error); ``args`` is ``("codec", blob)`` (the
  driver's shared-memory descriptors, same node) or ``("ray", (args, kwargs))``
  (objects Ray carried); results go back the same way.
* ``drain() -> events``; events are ``(event, measurements, metadata)``.

A ``run`` request whose arguments are descriptors, and its ``"ok"`` reply
with a result that is one too, travel as one ``bytes`` (the tuple pickled):
Ray passes ``bytes`` through as they are, while it serializes a tuple
field by field, which cost a no-op call about 150 us of its 850 (measured
side by side on one actor). Requests and replies that carry objects for
Ray to move (``"ray"``: large arrays go to its object store) stay tuples.
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from snakepit._wire import codec
from snakepit.errors import SnakepitError
from snakepit.pool._pool import Pool
from snakepit.telemetry import _bus

from ._ray_data import host_mode, portable_blob, resolve_args

__all__ = ["EVENT_BUFFER", "SnakepitHost", "portable_blob", "portable_metadata"]

#: Events a host keeps for the driver between two drains (the oldest go first).
EVENT_BUFFER = 10_000
_PLAIN = (str, int, float, bool, type(None))
#: Option sets whose pool view a host keeps.
_VIEWS = 64


def portable_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with values another process can read: plain values as they
    are, tuples and lists of plain values as tuples, anything else as its repr
    (handlers on the driver must not depend on this host's objects)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, _PLAIN):
            out[key] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
            out[key] = tuple(value)
        else:
            out[key] = repr(value)
    return out


def packed_request(request: tuple[Any, ...]) -> tuple[Any, ...] | bytes:
    """A ``run`` request as Ray should carry it (see the module docs)."""
    return pickle.dumps(request, protocol=5) if request[3][0] == "codec" else request


def _unpacked(message: tuple[Any, ...] | bytes, fields: int, what: str) -> tuple[Any, ...]:
    """A request or reply as its sender built it: a tuple of ``fields``."""
    if type(message) is bytes:
        message = pickle.loads(message)
    if type(message) is not tuple or len(message) != fields:
        raise TypeError(f"malformed run {what}: {type(message).__name__}")
    return message


def _unpacked_request(request: tuple[Any, ...] | bytes) -> tuple[Any, ...]:
    return _unpacked(request, 7, "request")


def _packed_reply(reply: tuple[Any, ...]) -> tuple[Any, ...] | bytes:
    if reply[0] == "ok" and reply[1][0] == "codec":
        return pickle.dumps(reply, protocol=5)
    return reply


def unpacked_reply(reply: tuple[Any, ...] | bytes) -> tuple[Any, ...]:
    """A ``run`` reply as the host built it: ``(status, value, cause, events)``."""
    return _unpacked(reply, 4, "reply")


def _error_record(exc: BaseException) -> tuple[BaseException, BaseException | None]:
    """An error and its cause, as separate parts (pickling drops ``__cause__``)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, SnakepitError) else None
    return exc, cause


class SnakepitHost:
    """One node's supervisor: a local pool driven by a remote :class:`RayPool`."""

    def __init__(self, host_name: str, sys_path: list[str]) -> None:
        self._name = host_name
        host_mode()  # arrays fetched from Ray's store reach workers read-only
        # Functions and initializers name modules by reference: the driver's
        # import path makes the same modules importable here (same machine;
        # other nodes need the code installed or shipped with runtime_env).
        for entry in sys_path:
            if entry and entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        self._pool: Pool | None = None
        self._events: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=EVENT_BUFFER)
        self._running: dict[int, Future[Any]] = {}
        self._functions: dict[int, Any] = {}
        self._views: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        #: The events recorded for the driver (what its handlers listen to).
        self._listening: frozenset[tuple[str, ...]] = frozenset()
        self._handler_id = f"snakepit-host-{host_name}"

    # ---------------------------------------------------------------- start

    def start(self, config_blob: bytes) -> tuple[Any, ...]:
        """Start the local pool: ``(status, info, error, cause)``; ``info`` always
        says where the host is (the driver cleans up after it by its pid)."""
        probe = None
        try:
            config = pickle.loads(config_blob)
            probe = config.pop("probe", None)
            self._listen(config.pop("listening", ()))
            self._pool = Pool(**config)
        except BaseException as exc:  # reported to the driver, which raises it
            return ("err", self._info(None), *_error_record(exc))
        return ("ok", self._info(probe), None, None)

    def _info(self, probe: Any) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        same = None
        if probe is not None:
            try:
                # The driver's shared-memory region is readable here: same node
                # and same /dev/shm (a container on the same node may not be).
                array = codec.decode(probe[0], keep=True)
                same = [int(v) for v in array[:4]] == list(probe[1])
                del array
            except SnakepitError:
                same = False
        return {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "pid": os.getpid(),
            "worker_pids": self.worker_pids(),
            "same_memory": same,
        }

    def _listen(self, events: Any) -> None:
        """Record for the driver the events its handlers listen to, and no
        other: with nobody attached there (or only its failure logging, for
        failures), a call's telemetry costs nothing here, as locally.

        ``events`` come from another process: a tuple of event names (tuples
        of strings); names this host never emits are left out.
        """
        from snakepit.telemetry._events import ALL_EVENTS

        if type(events) is not tuple or not all(
            type(event) is tuple and all(type(part) is str for part in event) for event in events
        ):
            raise TypeError(f"malformed events to listen to: {events!r:.200}")
        wanted = frozenset(events) & frozenset(ALL_EVENTS)
        with self._lock:
            if wanted == self._listening:
                return
            self._listening = wanted
            _bus.detach(self._handler_id)
            if wanted:
                _bus.attach_many(self._handler_id, sorted(wanted), self._record, None)

    def _record(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        self._events.append((event, dict(measurements), portable_metadata(metadata or {})))

    def _take_events(self) -> list[tuple[Any, ...]]:
        events = []
        while True:
            try:
                events.append(self._events.popleft())
            except IndexError:
                return events

    # ---------------------------------------------------------------- calls

    def _function(self, fn_id: int, fn_blob: bytes | str) -> Any:
        if isinstance(fn_blob, str):
            return fn_blob
        fn = self._functions.get(fn_id)
        if fn is None:
            fn = self._functions[fn_id] = pickle.loads(fn_blob)
        return fn

    def _view(self, pool: Pool, options: tuple[Any, ...]) -> Any:
        """``pool.options(...)`` for ``options``, kept for the option sets
        without a session (a handful per pool; sessions' names are unbounded)."""
        view = self._views.get(options)
        if view is None:
            timeout, idempotent, session, device = options
            view = pool.options(
                timeout=timeout, idempotent=idempotent, session=session, device=device
            )
            if session is None and len(self._views) < _VIEWS:
                self._views[options] = view
        return view

    def run(self, request: tuple[Any, ...] | bytes) -> tuple[Any, ...] | bytes:
        """Run one call on the local pool and wait for it (one Ray thread each).

        ``request`` is ``(call_id, fn_id, fn_blob, args, options, receiver,
        listening)``. ``receiver``: the driver's pid when results go back as
        shared-memory descriptors; ``listening``: the events the driver's
        handlers listen to, or None when they are what it last said.
        """
        call_id, fn_id, fn_blob, args, options, receiver, listening = _unpacked_request(request)
        pool = self._pool
        assert pool is not None, "start() first"
        if listening is not None:  # None: as the last request said
            self._listen(listening)
        try:
            fn = self._function(fn_id, fn_blob)
            how, payload = args
            if how == "codec":
                call_args, call_kwargs = codec.decode(payload, keep=True)
            else:
                call_args, call_kwargs = resolve_args(payload)
            view = self._view(pool, options)
            # Known before the call starts (``cancel`` looks it up), and
            # completed by this thread reading the reply itself.
            future: Future[Any] = Future()
            with self._lock:
                self._running[call_id] = future
            try:
                pool._submit(
                    fn,
                    call_args,
                    call_kwargs,
                    view.call_options,
                    caller_waits=True,
                    future=future,
                )
                del call_args, call_kwargs
                value = future.result()
            finally:
                with self._lock:
                    self._running.pop(call_id, None)
            if receiver is not None:
                encoded = codec.encode(value, receiver=receiver, snapshot=False)
                value = ("codec", portable_blob(encoded.blob))
            else:
                value = ("ray", value)
        except BaseException as exc:  # every failure is the call's result
            return ("err", *_error_record(exc), self._take_events())
        return _packed_reply(("ok", value, None, self._take_events()))

    def cancel(self, call_id: int, kill: bool) -> bool:
        """Cancel a running call of this host (see ``Pool.cancel``)."""
        with self._lock:
            future = self._running.get(call_id)
        if future is None or self._pool is None:
            return False
        return self._pool.cancel(future, kill=kill)

    # ---------------------------------------------------------------- state

    def drain(self) -> list[tuple[Any, ...]]:
        """The events since the last drain (also the driver's liveness probe)."""
        return self._take_events()

    def stats(self) -> dict[str, int]:
        """The local pool's ``stats()``."""
        return self._pool.stats() if self._pool is not None else {}

    def health(self) -> dict[str, Any]:
        """The local pool's ``health()``, made portable."""
        return self._pool.health() if self._pool is not None else {}

    def worker_pids(self) -> list[int]:
        """Pids of the local pool's live workers."""
        return self._pool.worker_pids() if self._pool is not None else []

    def stop(self, kill_running: bool) -> bool:
        """Shut the local pool down (its workers end; their regions are unlinked)."""
        self._listen(())
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True, kill_running=kill_running)
        return True
