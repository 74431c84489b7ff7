"""The event bus: attach/detach, dispatch, failing handlers, spans, threads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from snakepit import telemetry
from snakepit.telemetry import _bus

EVENT = ("test", "thing", "happened")
OTHER = ("test", "other")


class Collector:
    """A handler that records every event it gets."""

    def __init__(self) -> None:
        self.events: list[tuple[tuple[str, ...], dict[str, float], dict[str, Any], Any]] = []

    def __call__(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        self.events.append((event, dict(measurements), dict(metadata), config))

    def names(self) -> list[tuple[str, ...]]:
        return [event for event, *_ in self.events]


@pytest.fixture(autouse=True)
def _clean_bus() -> Iterator[None]:
    yield
    for info in telemetry.list_handlers():
        if info.handler_id.startswith("test-"):
            telemetry.detach(info.handler_id)


def test_attached_handler_gets_event_measurements_metadata_and_config() -> None:
    seen = Collector()
    telemetry.attach("test-a", EVENT, seen, config={"k": 1})
    telemetry.execute(EVENT, {"n": 2.0}, {"who": "me"})
    telemetry.execute(OTHER, {"n": 3.0}, {})
    assert seen.events == [(EVENT, {"n": 2.0}, {"who": "me"}, {"k": 1})]


def test_attach_many_and_detach() -> None:
    seen = Collector()
    telemetry.attach_many("test-many", [EVENT, OTHER], seen)
    telemetry.execute(EVENT, {}, None)
    telemetry.execute(OTHER, {}, None)
    assert seen.names() == [EVENT, OTHER]
    assert telemetry.detach("test-many") is True
    assert telemetry.detach("test-many") is False
    telemetry.execute(EVENT, {}, None)
    assert len(seen.events) == 2


def test_duplicate_ids_and_bad_event_names_are_refused() -> None:
    telemetry.attach("test-dup", EVENT, Collector())
    with pytest.raises(ValueError, match="already attached"):
        telemetry.attach("test-dup", OTHER, Collector())
    for bad in [(), ("ok", ""), ("ok", 3), "snakepit.call"]:
        with pytest.raises(TypeError):
            telemetry.attach_many("test-bad", [bad], Collector())  # type: ignore[list-item]
    with pytest.raises(TypeError):
        telemetry.attach("test-notcallable", EVENT, 42)  # type: ignore[arg-type]


def test_list_handlers_filters_by_prefix() -> None:
    telemetry.attach("test-x", EVENT, Collector())
    telemetry.attach("test-y", OTHER, Collector())
    ids = {info.handler_id for info in telemetry.list_handlers(("test", "thing"))}
    assert ids == {"test-x"}
    assert {"test-x", "test-y"} <= {info.handler_id for info in telemetry.list_handlers()}


def test_failing_handler_is_detached_logged_once_and_never_breaks_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = Collector()

    def broken(*_: Any) -> None:
        raise ZeroDivisionError("handler bug")

    telemetry.attach("test-broken", EVENT, broken)
    telemetry.attach("test-good", EVENT, good)
    with caplog.at_level(logging.ERROR, logger="snakepit.telemetry"):
        telemetry.execute(EVENT, {}, {})
        telemetry.execute(EVENT, {}, {})
    assert len(good.events) == 2
    assert "test-broken" not in {info.handler_id for info in telemetry.list_handlers()}
    records = [r for r in caplog.records if "test-broken" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None


def test_enabled_reflects_attachment() -> None:
    assert not telemetry.enabled(EVENT)
    telemetry.attach("test-en", EVENT, Collector())
    assert telemetry.enabled(EVENT)
    telemetry.detach("test-en")
    assert not telemetry.enabled(EVENT)


def test_span_emits_start_and_stop_with_duration_and_added_metadata() -> None:
    seen = Collector()
    prefix = ("test", "span")
    telemetry.attach_many("test-span", [(*prefix, s) for s in ("start", "stop", "exception")], seen)
    with telemetry.span(prefix, {"model": "m"}) as span:
        span.set(batch=3)
        span.measure(items=7)
    assert seen.names() == [(*prefix, "start"), (*prefix, "stop")]
    start, stop = seen.events
    assert start[2] == {"model": "m"}
    assert "monotonic_time" in start[1]
    assert "system_time" in start[1]
    assert stop[1]["duration"] >= 0
    assert stop[1]["items"] == 7
    assert stop[2] == {"model": "m", "batch": 3}


def test_span_reports_exceptions_and_lets_them_propagate() -> None:
    seen = Collector()
    prefix = ("test", "span")
    telemetry.attach_many("test-span", [(*prefix, s) for s in ("start", "stop", "exception")], seen)
    error = KeyError("missing")
    with pytest.raises(KeyError), telemetry.span(prefix):
        raise error
    assert seen.names() == [(*prefix, "start"), (*prefix, "exception")]
    metadata = seen.events[1][2]
    assert metadata["kind"] == "KeyError"
    assert metadata["exception"] is error
    assert "missing" in metadata["reason"]


def test_span_as_decorator_opens_a_fresh_span_per_call() -> None:
    seen = Collector()
    prefix = ("test", "deco")
    telemetry.attach_many("test-deco", [(*prefix, "start"), (*prefix, "stop")], seen)

    @telemetry.span(prefix, {"fn": "double"})
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    assert double(5) == 10
    assert seen.names() == [(*prefix, "start"), (*prefix, "stop")] * 2
    assert double.__name__ == "double"


def test_ml_helpers_measure_and_compute_tokens_per_second() -> None:
    seen = Collector()
    telemetry.attach_many(
        "test-ml",
        [("snakepit", "ml", name) for name in ("tensor_op", "inference", "train_step")],
        seen,
    )
    with telemetry.inference("tiny-llm", batch_size=4) as record:
        record.tokens = 128
    with telemetry.train_step(7, model="net") as step:
        step.loss = 0.25
    with telemetry.tensor_op("matmul", shape=(3, 4), dtype="float32", nbytes=48):
        pass
    (inf, train, op) = seen.events
    assert inf[1]["tokens"] == 128
    assert inf[1]["batch_size"] == 4
    assert inf[1]["tokens_per_second"] == pytest.approx(128 / inf[1]["duration"])
    assert train[1]["loss"] == 0.25
    assert train[2] == {"step": 7, "model": "net"}
    assert op[2]["op"] == "matmul"
    assert op[1]["bytes"] == 48


def test_attach_and_detach_while_other_threads_emit() -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = Collector()
    telemetry.attach("test-steady", EVENT, counts)

    def emit() -> None:
        try:
            while not stop.is_set():
                telemetry.execute(EVENT, {"x": 1.0}, None)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=emit) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(300):
            telemetry.attach(f"test-churn-{round_}", EVENT, lambda *a: None)
            telemetry.detach(f"test-churn-{round_}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(counts.events) > 0
    assert [i.handler_id for i in telemetry.list_handlers(EVENT)] == ["test-steady"]


def test_forwarder_sees_every_event_and_its_failure_is_contained() -> None:
    forwarded: list[tuple[str, ...]] = []
    _bus.set_forwarder(lambda event, m, md: forwarded.append(event))
    try:
        assert telemetry.enabled(("nobody", "listens"))
        telemetry.execute(("nobody", "listens"), {}, None)

        def broken(*_: Any) -> None:
            raise OSError("socket gone")

        _bus.set_forwarder(broken)
        telemetry.execute(EVENT, {}, None)  # must not raise
    finally:
        _bus.set_forwarder(None)
    assert forwarded == [("nobody", "listens")]


def test_the_deferred_thread_is_held_only_between_events() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        started.set()
        release.wait(10)

    telemetry.attach("test-held", ("test", "held"), slow)
    _bus.start_deferred()
    assert _bus.deferred_thread_alive()
    try:
        with _bus.held_idle(5.0) as held:
            assert held
        _bus.execute_later(("test", "held"), {}, {})
        assert started.wait(10)
        with _bus.held_idle(0.05) as held:
            assert not held  # a handler is running on the thread
    finally:
        release.set()
    assert _bus.flush_deferred(10)
    with _bus.held_idle(5.0) as held:
        assert held
