"""Trace context across the process boundary (W3C ``traceparent``).

With OpenTelemetry in use, each call carries the context of its span (the
call span of an attached :class:`~snakepit.telemetry.OpenTelemetryBridge`,
else the caller's current span) as a small carrier dict. In the worker the
carrier is the current OpenTelemetry context while the function runs, so
spans the user's code starts there are children of the call's span; and
snakepit spans the worker emits (:func:`snakepit.telemetry.span`), which
travel to the supervisor as events, carry it too, so the bridge there makes
them children of the same span.

OpenTelemetry is imported only where it already is: by the caller (to make
a carrier), and in a worker only when a carrier arrives.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["active_carrier", "activated", "carrier_for_call", "span_sources", "valid_carrier"]

#: Attached bridges (anything with ``call_span(pool, call_id)``): where a
#: call's own span is found.
span_sources: weakref.WeakSet[Any] = weakref.WeakSet()

#: Keys a carrier may hold (W3C trace context), and their longest values.
_KEYS = {"traceparent": 64, "tracestate": 512}

_active: dict[str, str] | None = None


def carrier_for_call(pool: str, call_id: int) -> dict[str, str] | None:
    """The carrier for a call being submitted, or None (no OpenTelemetry, no span)."""
    if "opentelemetry" not in sys.modules:
        return None  # nobody here traces: cost a dict lookup, import nothing
    from opentelemetry import propagate, trace

    span = None
    for source in list(span_sources):
        span = source.call_span(pool, call_id)
        if span is not None:
            break
    if span is None:
        span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return valid_carrier(carrier)


def valid_carrier(value: object) -> dict[str, str] | None:
    """``value`` if it is a well-formed carrier (it comes from another process)."""
    if not isinstance(value, Mapping) or "traceparent" not in value:
        return None
    carrier: dict[str, str] = {}
    for key, text in value.items():
        limit = _KEYS.get(key) if isinstance(key, str) else None
        if limit is None or not isinstance(text, str) or len(text) > limit:
            return None
        carrier[key] = text
    return carrier


def active_carrier() -> dict[str, str] | None:
    """The carrier of the call running in this worker, if it has one."""
    return _active


@contextlib.contextmanager
def activated(carrier: object) -> Iterator[None]:
    """Worker side: the call's context is current while its function runs."""
    global _active
    checked = valid_carrier(carrier)
    if checked is None:
        yield
        return
    token: Any = None
    context_api: Any = None
    try:
        from opentelemetry import context as context_api
        from opentelemetry import propagate

        token = context_api.attach(propagate.extract(checked))
    except ImportError:  # not installed in the worker: snakepit's own spans still nest
        pass
    _active = checked
    try:
        yield
    finally:
        _active = None
        if token is not None:
            context_api.detach(token)
