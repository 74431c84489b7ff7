"""Bridge span-style telemetry events to OpenTelemetry spans.

A *span event family* is a prefix with ``start``, ``stop`` and ``exception``
events, such as snakepit's ``("snakepit", "call")`` or anything a user wraps in
:func:`snakepit.telemetry.span`. The bridge opens an OpenTelemetry span on
``start`` and ends it on ``stop`` or ``exception``, with the start time taken
from the start event's ``system_time`` and the end from the stop event's
``duration``, so the span lasts exactly what snakepit measured.

Start and stop of a pool call arrive on different threads (the caller's and a
reader's), so they are paired by ``(prefix, pool, call_id)`` when the metadata
has a ``call_id``; otherwise by a per-thread stack, which also makes nested
spans children of the enclosing one.

Needs ``opentelemetry-api`` (and an SDK to export anything): the
``snakepit-ml[opentelemetry]`` extra. It is imported only when a bridge is made.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snakepit.telemetry._bus import Event, Measurements, Metadata, attach_many, detach
from snakepit.telemetry._events import ALL_EVENTS
from snakepit.telemetry._propagation import span_sources, valid_carrier

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import AttributeValue

_INSTALL_HINT = (
    "OpenTelemetryBridge needs opentelemetry-api (and opentelemetry-sdk to export): "
    "pip install snakepit-ml[opentelemetry]"
)
_PHASES = ("start", "stop", "exception")
_NOT_ATTRIBUTES = frozenset({"monotonic_time", "system_time", "exception", "trace_context"})
#: Spans started but not yet ended that are remembered (oldest dropped first).
DEFAULT_MAX_PENDING = 10_000
_CALL: Event = ("snakepit", "call")


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return trace


def span_prefixes(events: Iterable[Event] = ALL_EVENTS) -> tuple[Event, ...]:
    """Prefixes that have both a ``start`` and a ``stop`` event among ``events``."""
    names = set(events)
    return tuple(
        event[:-1]
        for event in events
        if event[-1] == "start" and (*event[:-1], "stop") in names and len(event) > 1
    )


def _attribute(value: Any) -> AttributeValue | None:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)) and value:
        kind = type(value[0])
        if kind in (str, bool, int, float) and all(type(item) is kind for item in value):
            return tuple(value)
    return None


def _attributes(values: Metadata | Measurements) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if key in _NOT_ATTRIBUTES:
            continue
        converted = _attribute(value)
        if converted is not None:
            out[f"snakepit.{key}"] = converted
    return out


class _Open:
    """A started span and its start time (ns since the epoch)."""

    __slots__ = ("prefix", "span", "start_ns")

    def __init__(self, prefix: Event, span: Span, start_ns: int) -> None:
        self.prefix = prefix
        self.span = span
        self.start_ns = start_ns


class OpenTelemetryBridge:
    """Turn snakepit's span events into OpenTelemetry spans.

    Args:
        tracer_provider: Where spans go; the global provider by default.
        prefixes: Further span prefixes to bridge (those given to your own
            :func:`snakepit.telemetry.span` calls), besides the catalogue's.
        handler_id: Id to attach under; unique per instance by default.
        max_pending: Started spans remembered until their stop arrives.

    Metadata and measurements become attributes named ``snakepit.<key>``
    (only strings, numbers, booleans and uniform sequences of them). An
    ``exception`` event sets the span status to ERROR and records the
    exception. Spans are named after the prefix (``snakepit.call``).

    Raises:
        ImportError: opentelemetry-api is not installed.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        prefixes: Iterable[Event] = (),
        handler_id: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        trace = _import_trace()
        self._trace = trace
        provider = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
        self._tracer: Tracer = provider.get_tracer("snakepit")
        extra = tuple(tuple(prefix) for prefix in prefixes)
        for prefix in extra:
            if not prefix or not all(isinstance(part, str) and part for part in prefix):
                raise TypeError(f"a span prefix is a tuple of non-empty strings, not {prefix!r}")
        self.prefixes: tuple[Event, ...] = tuple(dict.fromkeys(span_prefixes() + extra))
        self.handler_id = handler_id or f"snakepit-otel-{id(self):x}"
        self._max_pending = max_pending
        self._pending: OrderedDict[tuple[Event, Any, Any], _Open] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def events(self) -> tuple[Event, ...]:
        """The events the bridge attaches to."""
        return tuple((*prefix, phase) for prefix in self.prefixes for phase in _PHASES)

    def attach(self) -> OpenTelemetryBridge:
        """Start turning events into spans; returns ``self``."""
        attach_many(self.handler_id, self.events, _handle, self)
        span_sources.add(self)
        return self

    def detach(self) -> bool:
        """Stop; spans started and not ended are dropped. Returns whether attached."""
        span_sources.discard(self)
        with self._lock:
            self._pending.clear()
        return detach(self.handler_id)

    def call_span(self, pool: str, call_id: int) -> Span | None:
        """The span this bridge opened for a pool call still running, if any."""
        with self._lock:
            opened = self._pending.get((_CALL, pool, call_id))
        return None if opened is None else opened.span

    # ----------------------------------------------------------------- pairing

    def _stack(self) -> list[_Open]:
        stack: list[_Open] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @staticmethod
    def _key(prefix: Event, metadata: Metadata) -> tuple[Event, Any, Any] | None:
        call_id = metadata.get("call_id")
        if call_id is None:
            return None
        return (prefix, metadata.get("pool"), call_id)

    def _parent(self, stack: list[_Open], metadata: Metadata) -> Any:
        if stack:
            return self._trace.set_span_in_context(stack[-1].span)
        # A span a worker started during a call: a child of the call's span.
        carrier = valid_carrier(metadata.get("trace_context"))
        if carrier is not None:
            from opentelemetry import propagate

            return propagate.extract(carrier)
        return None

    def _start(self, prefix: Event, measurements: Measurements, metadata: Metadata) -> None:
        stack = self._stack()
        context = self._parent(stack, metadata)
        system_time = measurements.get("system_time")
        start_ns = time.time_ns() if system_time is None else int(system_time * 1e9)
        span = self._tracer.start_span(
            ".".join(prefix),
            context=context,
            attributes=_attributes(metadata),
            start_time=start_ns,
        )
        opened = _Open(prefix, span, start_ns)
        key = self._key(prefix, metadata)
        if key is None:
            stack.append(opened)
            return
        with self._lock:
            self._pending[key] = opened
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)

    def _take(self, prefix: Event, metadata: Metadata) -> _Open | None:
        key = self._key(prefix, metadata)
        if key is not None:
            with self._lock:
                return self._pending.pop(key, None)
        stack = self._stack()
        for index in range(len(stack) - 1, -1, -1):
            if stack[index].prefix == prefix:
                return stack.pop(index)
        return None

    def _end(
        self, prefix: Event, measurements: Measurements, metadata: Metadata, failed: bool
    ) -> None:
        opened = self._take(prefix, metadata)
        duration = measurements.get("duration")
        if opened is None:  # attached after the start: reconstruct it from the duration
            end_ns = time.time_ns()
            start_ns = end_ns - int((duration or 0.0) * 1e9)
            stack = self._stack()
            context = self._trace.set_span_in_context(stack[-1].span) if stack else None
            span = self._tracer.start_span(".".join(prefix), context=context, start_time=start_ns)
        else:
            span, start_ns = opened.span, opened.start_ns
            end_ns = time.time_ns() if duration is None else start_ns + int(duration * 1e9)
        span.set_attributes({**_attributes(metadata), **_attributes(measurements)})
        if failed:
            status = self._trace.Status(
                self._trace.StatusCode.ERROR,
                f"{metadata.get('kind', 'Exception')}: {metadata.get('reason', '')}",
            )
            span.set_status(status)
            exc = metadata.get("exception")
            if isinstance(exc, BaseException):
                span.record_exception(exc, timestamp=end_ns, escaped=True)
        span.end(end_time=end_ns)


def _handle(event: Event, measurements: Measurements, metadata: Metadata, config: Any) -> None:
    bridge: OpenTelemetryBridge = config
    prefix, phase = event[:-1], event[-1]
    if phase == "start":
        bridge._start(prefix, measurements, metadata)
    else:
        bridge._end(prefix, measurements, metadata, failed=phase == "exception")
