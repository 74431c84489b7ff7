"""Cost of the event bus per event (SPEC section 4: well under a microsecond unattached).

- ``execute-0``: ``telemetry.execute`` of an event nobody listens to.
- ``execute-1``: the same event with one trivial handler attached.
- ``span-0``: a ``telemetry.span`` (start and stop) with no handler attached.
- ``enabled-0``: the check hot paths make before building measurements.
- ``logging-filtered``: a call-stop event through the logging handler when the
  logger drops DEBUG (the usual production set-up).
- ``prometheus``: a call-stop event through the Prometheus metrics handler.

Each round is one event (or one span); read the figures as nanoseconds per event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from snakepit import telemetry
from snakepit.telemetry import _events as ev

EVENT = ("bench", "thing", "happened")
PREFIX = ("bench", "block")
MEASUREMENTS = {"duration": 0.001}
METADATA = {"who": "bench"}
STOP_MEASUREMENTS = {
    "duration": 0.0123,
    "queue_time": 0.0001,
    "serialize_time": 0.0002,
    "python_time": 0.0119,
    "deserialize_time": 0.0001,
    "attempts": 1.0,
}
STOP_METADATA = {"call_id": 7, "function": "demo:f", "pool": "p", "worker_id": 0, "pid": 1}


def _noop(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
    pass


@pytest.fixture
def one_handler() -> Iterator[None]:
    telemetry.attach("bench-noop", EVENT, _noop)
    try:
        yield
    finally:
        telemetry.detach("bench-noop")


def _setup(benchmark: Any, case: str) -> None:
    benchmark.group = "telemetry-bus"
    benchmark.extra_info.update(case=case, impl="snakepit")


def test_execute_without_handlers(benchmark: Any) -> None:
    assert not telemetry.enabled(EVENT)
    _setup(benchmark, "execute-0")
    benchmark(telemetry.execute, EVENT, MEASUREMENTS, METADATA)


def test_execute_with_one_handler(benchmark: Any, one_handler: None) -> None:
    assert telemetry.enabled(EVENT)
    _setup(benchmark, "execute-1")
    benchmark(telemetry.execute, EVENT, MEASUREMENTS, METADATA)


def test_enabled_without_handlers(benchmark: Any) -> None:
    _setup(benchmark, "enabled-0")
    assert benchmark(telemetry.enabled, EVENT) is False


def test_span_without_handlers(benchmark: Any) -> None:
    _setup(benchmark, "span-0")

    def block() -> None:
        with telemetry.span(PREFIX, METADATA):
            pass

    benchmark(block)


def test_call_stop_through_filtered_logging(benchmark: Any) -> None:
    logger = logging.getLogger("bench.snakepit.telemetry")
    logger.setLevel(logging.WARNING)
    handler_id = telemetry.attach_logging(logger, handler_id="bench-logging")
    try:
        _setup(benchmark, "logging-filtered")
        benchmark(telemetry.execute, ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)
    finally:
        telemetry.detach_logging(handler_id)
        logger.setLevel(logging.NOTSET)


def test_call_stop_through_prometheus(benchmark: Any) -> None:
    pytest.importorskip("prometheus_client")
    metrics = telemetry.PrometheusMetrics().attach()
    try:
        _setup(benchmark, "prometheus")
        benchmark(telemetry.execute, ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)
        assert metrics.registry.get_sample_value(
            "snakepit_calls_total", {"function": "demo:f", "outcome": "ok"}
        )
    finally:
        metrics.detach()
