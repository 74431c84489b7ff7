"""The in-process event bus: handlers attached to event names, spans.

Modelled on Erlang/Elixir ``:telemetry``: an event is a tuple of strings,
emitted with numeric *measurements* and descriptive *metadata*; handlers are
plain functions attached under an id. The handler table is copied on write and
read without a lock, so emitting an event with nobody listening is a single
dictionary lookup, and handlers can be attached and detached from any thread
while events are being emitted.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    import logging

Event = tuple[str, ...]
Measurements = Mapping[str, float]
Metadata = Mapping[str, Any]
#: ``handler(event, measurements, metadata, config)``
Handler = Callable[[Event, Measurements, Metadata, Any], None]
Forwarder = Callable[[Event, Measurements, Metadata], None]


def _log() -> logging.Logger:
    """The bus's logger; logging is imported on first use (a worker starts without it)."""
    import logging

    return logging.getLogger("snakepit.telemetry")


_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """One attached handler, as :func:`list_handlers` reports it."""

    handler_id: str
    events: tuple[Event, ...]
    function: Handler
    config: Any


# event -> handlers attached to it. Replaced, never mutated, under _lock.
_table: dict[Event, tuple[HandlerInfo, ...]] = {}
_handlers: dict[str, HandlerInfo] = {}
_lock = threading.Lock()
_forwarder: Forwarder | None = None
#: Whether any handler is attached in this process: one attribute test for hot
#: paths (shared-memory allocation) that emit nothing while nobody listens.
listening = False


class _Everything:
    """Holds every event: a forwarder takes them all."""

    def __contains__(self, event: object) -> bool:
        return True


#: ``event in reaching`` is :func:`enabled` without a function call, for
#: paths that run on every pool call.
reaching: Container[Event] = {}
#: ``event in handled`` is :func:`has_handlers` without a function call, for
#: per-process events on hot paths (shared-memory allocation): a pool's
#: failure logging makes ``listening`` true, and these still cost nothing.
handled: Mapping[Event, tuple[HandlerInfo, ...]] = {}


def _rebuild_locked() -> None:
    global _table, listening, handled
    table: dict[Event, list[HandlerInfo]] = {}
    for info in _handlers.values():
        for event in info.events:
            table.setdefault(event, []).append(info)
    _table = handled = {event: tuple(infos) for event, infos in table.items()}
    listening = bool(_table)
    _update_reaching()


def _update_reaching() -> None:
    global reaching
    reaching = _Everything() if _forwarder is not None else _table


def _check_event(event: object) -> Event:
    if (
        not isinstance(event, tuple)
        or not event
        or not all(isinstance(part, str) and part for part in event)
    ):
        raise TypeError(f"an event name is a non-empty tuple of non-empty strings, not {event!r}")
    return event


def attach_many(
    handler_id: str, events: Iterable[Event], function: Handler, config: Any = None
) -> None:
    """Call ``function(event, measurements, metadata, config)`` for each of ``events``.

    Raises ``ValueError`` if ``handler_id`` is already attached: ids are how a
    handler is found again, so they must be unique (detach first to replace).
    """
    if not isinstance(handler_id, str) or not handler_id:
        raise TypeError("handler_id must be a non-empty string")
    if not callable(function):
        raise TypeError(f"handler {function!r} is not callable")
    checked = tuple(dict.fromkeys(_check_event(event) for event in events))
    if not checked:
        raise ValueError("attach needs at least one event")
    with _lock:
        if handler_id in _handlers:
            raise ValueError(f"a handler with id {handler_id!r} is already attached")
        _handlers[handler_id] = HandlerInfo(handler_id, checked, function, config)
        _rebuild_locked()


def attach(
    handler_id: str,
    events: Event | Iterable[Event],
    function: Handler,
    config: Any = None,
) -> None:
    """Attach ``function`` to one event (a tuple of strings) or to several."""
    if isinstance(events, tuple) and all(isinstance(part, str) for part in events):
        events = [events]  # a single event name
    attach_many(handler_id, events, function, config)  # type: ignore[arg-type]


def detach(handler_id: str) -> bool:
    """Remove a handler; returns whether it was attached."""
    with _lock:
        if _handlers.pop(handler_id, None) is None:
            return False
        _rebuild_locked()
        return True


def list_handlers(prefix: Event = ()) -> list[HandlerInfo]:
    """Handlers attached to any event that starts with ``prefix`` (all by default)."""
    with _lock:
        infos = list(_handlers.values())
    return [info for info in infos if any(event[: len(prefix)] == prefix for event in info.events)]


def enabled(event: Event) -> bool:
    """Whether emitting ``event`` here would reach anyone.

    Call sites on hot paths use this to skip building measurements at all.
    """
    return event in _table or _forwarder is not None


def any_handlers() -> bool:
    """Whether any handler is attached in this process (see ``listening``)."""
    return listening


def has_handlers(event: Event) -> bool:
    """Whether a handler in this process listens to ``event`` (forwarding aside).

    For per-process events (shared-memory allocations) that are never
    forwarded from workers.
    """
    return event in _table


def _failed(info: HandlerInfo, event: Event) -> None:
    with _lock:
        current = _handlers.get(info.handler_id)
        if current is not info:
            return  # already detached (or replaced) by another thread
        del _handlers[info.handler_id]
        _rebuild_locked()
    _log().error(
        "telemetry handler %r raised on event %r and was detached",
        info.handler_id,
        event,
        exc_info=True,
    )


def execute(event: Event, measurements: Measurements, metadata: Metadata | None = None) -> None:
    """Emit ``event`` to every handler attached to it.

    A handler that raises is detached and logged once; the caller never sees
    its exception.
    """
    handlers = _table.get(event)
    if handlers is not None:
        meta = _EMPTY if metadata is None else metadata
        for info in handlers:
            try:
                info.function(event, measurements, meta, info.config)
            except Exception:
                _failed(info, event)
    if _forwarder is not None:
        _forward(event, measurements, metadata)


def _forward(event: Event, measurements: Measurements, metadata: Metadata | None) -> None:
    forwarder = _forwarder
    if forwarder is None:
        return
    try:
        forwarder(event, measurements, _EMPTY if metadata is None else metadata)
    except Exception:
        _log().debug("could not forward telemetry event %r", event, exc_info=True)


# Events emitted from garbage-collection callbacks wait here for the deferred
# thread: a callback can run inside any handler, and a handler holding a lock
# would deadlock on its own event. SimpleQueue.put is documented reentrant
# (safe in __del__ and weakref callbacks); an ordinary Queue is not.
_deferred: queue.SimpleQueue[tuple[Event, Measurements, Metadata | None]] = queue.SimpleQueue()
_deferred_thread: threading.Thread | None = None
_deferred_lock = threading.Lock()
#: Held by the deferred thread while it emits an event (see :func:`held_idle`).
_emitting = threading.RLock()


def _deferred_loop() -> None:
    while True:
        event, measurements, metadata = _deferred.get()
        with _emitting:
            if event is _FLUSH_EVENT and metadata is not None:
                metadata["done"].set()
                continue
            execute(event, measurements, metadata)


def deferred_thread_alive() -> bool:
    """Whether this process runs the deferred thread (:func:`start_deferred`)."""
    thread = _deferred_thread
    return thread is not None and thread.is_alive()


@contextlib.contextmanager
def held_idle(timeout: float) -> Iterator[bool]:
    """Keep the deferred thread from emitting (True), or say it would not stop
    within ``timeout`` seconds (False).

    Held, the thread is between events, waiting on its queue: holding no
    lock a handler takes, so a fork taken now copies none held.
    """
    held = _emitting.acquire(timeout=timeout)
    try:
        yield held
    finally:
        if held:
            _emitting.release()


def forget_handlers() -> None:
    """Detach every handler and the forwarder: this process starts over as
    one that attached none (a fork of the supervisor that becomes a template)."""
    with _lock:
        _handlers.clear()
        _rebuild_locked()
    set_forwarder(None)


def execute_later(
    event: Event, measurements: Measurements, metadata: Metadata | None = None
) -> None:
    """Emit ``event`` from a background thread, soon.

    For code that may run inside garbage collection (finalizers, weakref
    callbacks), where calling handlers directly could deadlock a handler that
    was interrupted while holding a lock. Safe to call from anywhere; the
    thread must have been started (:func:`start_deferred`) from ordinary code,
    since starting a thread takes locks too.
    """
    _deferred.put((event, measurements, metadata))


def start_deferred() -> None:
    """Start the thread that emits :func:`execute_later` events (idempotent)."""
    global _deferred_thread
    if _deferred_thread is not None:
        return
    with _deferred_lock:
        if _deferred_thread is None:
            thread = threading.Thread(target=_deferred_loop, name="snakepit-telemetry", daemon=True)
            thread.start()
            _deferred_thread = thread


def flush_deferred(timeout: float = 5.0) -> bool:
    """Wait until events queued by :func:`execute_later` so far have been emitted."""
    if _deferred_thread is None:
        return _deferred.empty()
    done = threading.Event()
    _deferred.put((_FLUSH_EVENT, {}, {"done": done}))
    return done.wait(timeout)


_FLUSH_EVENT: Event = ("_flush",)  # internal marker, never emitted


def _after_fork_in_child() -> None:
    global _deferred_thread, _deferred, _emitting
    _deferred_thread = None  # threads do not survive fork
    _deferred = queue.SimpleQueue()
    _emitting = threading.RLock()  # held by the thread that forked, if it was


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_forwarder(forwarder: Forwarder | None) -> None:
    """Also hand every event to ``forwarder`` (a worker sends them to its supervisor)."""
    global _forwarder
    _forwarder = forwarder
    _update_reaching()


_span_events: dict[Event, tuple[Event, Event, Event]] = {}


def _span_names(prefix: Event) -> tuple[Event, Event, Event]:
    _check_event(prefix)
    names = ((*prefix, "start"), (*prefix, "stop"), (*prefix, "exception"))
    if len(_span_events) < 4096:  # bounded: prefixes could be made up per call
        _span_events[prefix] = names
    return names


P = ParamSpec("P")
R = TypeVar("R")


class span:  # noqa: N801 - used like a function: ``with telemetry.span(...)``
    """Emit ``prefix + ("start",)``, then ``("stop",)`` or ``("exception",)``.

    Usable as a context manager and as a decorator. ``start`` carries
    ``monotonic_time`` and ``system_time``; ``stop`` and ``exception`` carry
    ``duration`` (seconds, monotonic clock) and the start metadata merged with
    anything added through :meth:`set`; ``exception`` metadata also has
    ``kind`` (the exception's type name), ``reason`` (its message) and
    ``exception`` (the object itself). The exception always propagates.
    """

    __slots__ = ("_events", "_extra_measurements", "_metadata", "_prefix", "_start")

    def __init__(self, event_prefix: Event, metadata: Metadata | None = None) -> None:
        # Names validated and built once per distinct prefix: spans are often
        # opened per call, and with nobody listening they must cost little.
        events = _span_events.get(event_prefix)
        if events is None:
            events = _span_names(event_prefix)
        self._prefix = event_prefix
        self._events = events
        self._metadata: dict[str, Any] = dict(metadata) if metadata else {}
        self._extra_measurements: dict[str, float] = {}
        self._start = 0.0

    def set(self, **metadata: Any) -> None:
        """Add metadata to the stop (or exception) event."""
        self._metadata.update(metadata)

    def measure(self, **measurements: float) -> None:
        """Add measurements to the stop (or exception) event."""
        self._extra_measurements.update(measurements)

    def __enter__(self) -> span:
        self._start = time.perf_counter()
        start_event = self._events[0]
        if start_event in _table or _forwarder is not None:
            execute(
                start_event,
                {"monotonic_time": self._start, "system_time": time.time()},
                dict(self._metadata),
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._start
        if exc is None:
            stop_event = self._events[1]
            if stop_event in _table or _forwarder is not None:
                execute(
                    stop_event, {**self._extra_measurements, "duration": duration}, self._metadata
                )
            return
        exception_event = self._events[2]
        if exception_event in _table or _forwarder is not None:
            execute(
                exception_event,
                {**self._extra_measurements, "duration": duration},
                {
                    **self._metadata,
                    "kind": type(exc).__name__,
                    "reason": _safe_str(exc),
                    "exception": exc,
                },
            )

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``function``: each call runs inside a fresh span."""
        prefix, metadata = self._prefix, self._metadata

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with span(prefix, metadata):
                return function(*args, **kwargs)

        return wrapper


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"
