"""The caller's trace context crosses into workers; worker spans nest under the call's."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import snakepit
from snakepit import telemetry
from snakepit.telemetry._propagation import valid_carrier

from . import _trace_tasks as tasks

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

ROOT = Path(__file__).resolve().parents[2]


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.bridge = telemetry.OpenTelemetryBridge(self.provider, prefixes=[tasks.WORK])

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    t.bridge.attach()
    try:
        yield t
    finally:
        t.bridge.detach()
        t.provider.shutdown()


def test_a_worker_snakepit_span_is_a_child_of_the_call_span(traced: Traced) -> None:
    with snakepit.Pool(1) as pool:
        assert pool.call(tasks.snakepit_span) == 7
    (call,) = traced.named("snakepit.call")
    (work,) = traced.named("test.worker_work")
    assert work.parent is not None
    assert work.parent.span_id == call.context.span_id
    assert work.context.trace_id == call.context.trace_id


def test_a_users_otel_span_in_the_worker_is_a_child_of_the_call_span(traced: Traced) -> None:
    with snakepit.Pool(1, initializer=tasks.install_tracing) as pool:
        trace_id, parent_id = pool.call(tasks.user_span)
    (call,) = traced.named("snakepit.call")
    assert trace_id == call.context.trace_id
    assert parent_id == call.context.span_id


def test_without_a_bridge_the_callers_current_span_travels() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test-caller")
    with snakepit.Pool(1, initializer=tasks.install_tracing) as pool:
        with tracer.start_as_current_span("caller-outer") as outer:
            trace_id, parent_id = pool.call(tasks.user_span)
        outside = pool.call(tasks.user_span)
    assert (trace_id, parent_id) == (
        outer.get_span_context().trace_id,
        outer.get_span_context().span_id,
    )
    assert outside[1] is None  # no span around the call: the worker's span is a root
    assert trace.get_current_span().get_span_context().is_valid is False


@pytest.mark.parametrize(
    "carrier",
    [
        None,
        "00-abc",
        {},
        {"tracestate": "x"},
        {"traceparent": 5},
        {"traceparent": "x" * 65},
        {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "evil": "1"},
    ],
)
def test_malformed_carriers_from_another_process_are_ignored(carrier: object) -> None:
    assert valid_carrier(carrier) is None


def test_a_process_that_does_not_trace_imports_no_opentelemetry() -> None:
    script = (
        "import sys, snakepit\n"
        "from tests.pool import _tasks\n"
        "with snakepit.Pool(1) as pool:\n"
        "    assert pool.call(_tasks.add, 1, 2) == 3\n"
        "assert 'opentelemetry' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
