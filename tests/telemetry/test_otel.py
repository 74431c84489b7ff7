"""The OpenTelemetry bridge: spans from span events, timing, pairing across threads."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.telemetry import _events as ev
from snakepit.telemetry._otel import span_prefixes

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

OP = ("test", "op")
INNER = ("test", "inner")


@pytest.fixture(autouse=True)
def _no_handler_left_attached() -> Iterator[None]:
    """The bus is global: every test detaches what it attached."""
    before = {info.handler_id for info in telemetry.list_handlers()}
    yield
    assert {info.handler_id for info in telemetry.list_handlers()} == before


class Traced:
    """A bridge attached to a tracer provider whose spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.bridge = telemetry.OpenTelemetryBridge(self.provider, prefixes=[OP, INNER])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    t.bridge.attach()
    try:
        yield t
    finally:
        t.bridge.detach()
        t.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_user_span_becomes_an_otel_span_with_its_measured_duration(traced: Traced) -> None:
    seen: list[float] = []
    telemetry.attach(
        "test-otel-duration", (*OP, "stop"), lambda e, m, md, c: seen.append(m["duration"])
    )
    try:
        with telemetry.span(OP, {"user": "ada", "shape": (2, 3), "obj": object(), "none": None}):
            time.sleep(0.01)
    finally:
        telemetry.detach("test-otel-duration")
    (span,) = traced.spans()
    assert span.name == "test.op"
    assert span.status.status_code is StatusCode.UNSET
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == int(seen[0] * 1e9)
    assert seen[0] >= 0.01
    assert attrs(span)["snakepit.user"] == "ada"
    assert attrs(span)["snakepit.shape"] == (2, 3)
    assert "snakepit.obj" not in attrs(span)
    assert "snakepit.none" not in attrs(span)
    assert attrs(span)["snakepit.duration"] == seen[0]


def test_an_exception_sets_error_status_and_records_it(traced: Traced) -> None:
    with pytest.raises(ValueError, match="bad input"), telemetry.span(OP):
        raise ValueError("bad input")
    (span,) = traced.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad input"
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ValueError"
    assert dict(event.attributes or {})["exception.message"] == "bad input"
    assert attrs(span)["snakepit.kind"] == "ValueError"


def test_nested_spans_are_parent_and_child(traced: Traced) -> None:
    with telemetry.span(OP), telemetry.span(INNER):
        pass
    inner, outer = traced.spans()  # the inner one ends first
    assert inner.name == "test.inner"
    assert inner.parent is not None
    assert outer.context is not None
    assert inner.parent.span_id == outer.context.span_id
    assert outer.parent is None


def test_call_start_and_stop_on_different_threads_pair_by_call_id(traced: Traced) -> None:
    now = time.time()
    for call_id in (1, 2):
        telemetry.execute(
            ev.CALL_START,
            {"monotonic_time": time.perf_counter(), "system_time": now + call_id},
            {"call_id": call_id, "function": f"demo:f{call_id}", "pool": "p"},
        )

    def finish() -> None:  # a reader thread, answering in the other order
        telemetry.execute(
            ev.CALL_EXCEPTION,
            {"duration": 0.25},
            {"call_id": 2, "function": "demo:f2", "pool": "p", "kind": "KeyError", "reason": "k"},
        )
        telemetry.execute(
            ev.CALL_STOP,
            {"duration": 0.5, "queue_time": 0.001},
            {"call_id": 1, "function": "demo:f1", "pool": "p", "worker_id": 3},
        )

    reader = threading.Thread(target=finish)
    reader.start()
    reader.join()
    second, first = traced.spans()
    assert first.name == second.name == "snakepit.call"
    assert attrs(first)["snakepit.function"] == "demo:f1"
    assert attrs(first)["snakepit.worker_id"] == 3
    assert attrs(first)["snakepit.queue_time"] == 0.001
    assert first.start_time == int((now + 1) * 1e9)
    assert first.end_time == first.start_time + int(0.5 * 1e9)
    assert attrs(second)["snakepit.function"] == "demo:f2"
    assert second.start_time == int((now + 2) * 1e9)
    assert second.end_time == second.start_time + int(0.25 * 1e9)
    assert second.status.status_code is StatusCode.ERROR
    assert first.status.status_code is StatusCode.UNSET


def test_real_pool_calls_become_spans_paired_across_threads(traced: Traced) -> None:
    with snakepit.Pool(workers=1) as pool:
        assert pool.call(sum, [1, 2]) == 3
        with pytest.raises(ValueError, match="invalid literal"):
            pool.call(int, "x")
    ok, failed = (s for s in traced.spans() if s.name == "snakepit.call")
    assert attrs(ok)["snakepit.function"] == "builtins:sum"
    assert attrs(ok)["snakepit.worker_id"] == 0
    assert ok.status.status_code is StatusCode.UNSET
    assert ok.end_time - ok.start_time == int(attrs(ok)["snakepit.duration"] * 1e9)  # type: ignore[operator]
    assert attrs(failed)["snakepit.function"] == "builtins:int"
    assert failed.status.status_code is StatusCode.ERROR
    assert "invalid literal" in (failed.status.description or "")


def test_same_call_id_in_two_pools_does_not_mix(traced: Traced) -> None:
    for pool in ("a", "b"):
        telemetry.execute(ev.CALL_START, {"system_time": time.time()}, {"call_id": 1, "pool": pool})
    telemetry.execute(ev.CALL_STOP, {"duration": 0.1}, {"call_id": 1, "pool": "b"})
    telemetry.execute(ev.CALL_STOP, {"duration": 0.2}, {"call_id": 1, "pool": "a"})
    b, a = traced.spans()
    assert attrs(b)["snakepit.pool"] == "b"
    assert b.end_time - b.start_time == int(0.1 * 1e9)  # type: ignore[operator]
    assert a.end_time - a.start_time == int(0.2 * 1e9)  # type: ignore[operator]


def test_spans_on_many_threads_stay_on_their_thread(traced: Traced) -> None:
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        with telemetry.span(OP, {"thread": index}):
            barrier.wait(10)  # every thread inside its outer span at once
            with telemetry.span(INNER, {"thread": index}):
                pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans = traced.spans()
    outers = {attrs(s)["snakepit.thread"]: s for s in spans if s.name == "test.op"}
    inners = [s for s in spans if s.name == "test.inner"]
    assert len(outers) == len(inners) == 8
    for inner in inners:
        outer = outers[attrs(inner)["snakepit.thread"]]
        assert inner.parent is not None
        assert outer.context is not None
        assert inner.parent.span_id == outer.context.span_id


def test_a_stop_without_a_start_still_gives_a_span_of_that_duration(traced: Traced) -> None:
    telemetry.execute((*OP, "stop"), {"duration": 0.75}, {"x": 1})
    (span,) = traced.spans()
    assert span.end_time - span.start_time == int(0.75 * 1e9)  # type: ignore[operator]
    assert attrs(span)["snakepit.x"] == 1


def test_detach_stops_bridging_and_catalogue_prefixes_are_included() -> None:
    t = Traced()
    assert ("snakepit", "call") in span_prefixes()
    assert ("snakepit", "call") in t.bridge.prefixes
    assert (*OP, "exception") in t.bridge.events
    t.bridge.attach()
    try:
        with telemetry.span(OP):
            pass
    finally:
        assert t.bridge.detach() is True
    with telemetry.span(OP):
        pass
    assert len(t.spans()) == 1
    t.provider.shutdown()


def test_bad_prefixes_are_refused() -> None:
    with pytest.raises(TypeError, match="span prefix"):
        telemetry.OpenTelemetryBridge(TracerProvider(), prefixes=[("ok", "")])


def test_missing_opentelemetry_raises_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install snakepit-ml\[opentelemetry\]"):
        telemetry.OpenTelemetryBridge()
