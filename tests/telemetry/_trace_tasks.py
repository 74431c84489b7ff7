"""Worker-side functions for the trace-context tests."""

from __future__ import annotations

from typing import Any

from snakepit import telemetry

WORK = ("test", "worker_work")
_EXPORTER: Any = None


def install_tracing() -> None:
    """Worker initializer: an SDK tracer provider exporting to memory."""
    global _EXPORTER
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _EXPORTER = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


def user_span() -> tuple[int, int | None]:
    """Start an OpenTelemetry span here; its trace id and its parent's span id."""
    from opentelemetry import trace

    with trace.get_tracer("test-worker").start_as_current_span("worker-inner") as span:
        context = span.get_span_context()
    parent = getattr(span, "parent", None)
    return context.trace_id, None if parent is None else parent.span_id


def snakepit_span() -> int:
    """A snakepit span in the worker (forwarded to the supervisor's bus)."""
    with telemetry.span(WORK, {"where": "worker"}):
        return 7
