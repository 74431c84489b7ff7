"""The catalogue's cases that run in this process: the telemetry bus, hardware detection.

Part of :mod:`snakepit._bench.cases` (which lists them in ``SUITES``);
prometheus_client is imported only when a case runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import snakepit
from snakepit import hardware, telemetry
from snakepit._bench import tasks
from snakepit._bench._model import (
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Timed,
    expect,
    seconds,
    timed_only,
    vs,
)
from snakepit.telemetry import _events as ev

# --------------------------------------------------------------- telemetry

PROBE: telemetry.Event = ("bench", "probe")  # not a snakepit event: never catalogued
PROBE_MEASUREMENTS: telemetry.Measurements = {"value": 1.0}
HANDLER_ID = "snakepit-bench-probe"
PEER_LOGGER = "snakepit.bench.peer"
STOP_MEASUREMENTS = {
    "duration": 0.0123,
    "queue_time": 0.0001,
    "serialize_time": 0.0002,
    "python_time": 0.0119,
    "deserialize_time": 0.0001,
    "attempts": 1.0,
}
STOP_METADATA = {"call_id": 7, "function": "demo:f", "pool": "p", "worker_id": 0, "pid": 1}
#: Calls per round of the per-event cases (a round of one event is mostly timer).
LOOP = 10_000
QUICK_LOOP = 2_000
#: Loop of the cases only the suite runs (a Prometheus event costs microseconds).
SHORT_LOOP = 1_000


def _empty_call(event: telemetry.Event, measurements: telemetry.Measurements) -> None:
    return None


def _trivial_handler(
    event: telemetry.Event,
    measurements: telemetry.Measurements,
    metadata: telemetry.Metadata,
    config: Any,
) -> None:
    return None


class _TrivialLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        return None


def _per_event(fn: Any, *args: Any, loop: int = LOOP) -> Timed:
    return Timed(
        fn,
        args,
        rounds=200,
        quick_rounds=30,
        warmup=1,
        iterations=loop,
        quick_iterations=min(loop, QUICK_LOOP),
    )


@contextlib.contextmanager
def _probe_free(env: Env) -> Iterator[Timed]:
    if telemetry.list_handlers(PROBE):
        raise BenchError(f"a handler is already attached to {PROBE}")
    yield _per_event(telemetry.execute, PROBE, PROBE_MEASUREMENTS)


@contextlib.contextmanager
def _probe_handled(env: Env) -> Iterator[Timed]:
    telemetry.attach(HANDLER_ID, PROBE, _trivial_handler)
    try:
        yield _per_event(telemetry.execute, PROBE, PROBE_MEASUREMENTS)
    finally:
        telemetry.detach(HANDLER_ID)


def _peer_logging(level: int, handled: bool) -> Prepare:
    @contextlib.contextmanager
    def run(env: Env) -> Iterator[Timed]:
        logger = logging.getLogger(PEER_LOGGER)
        logger.propagate = False
        old_level = logger.level
        if handled:
            logger.addHandler(_TrivialLogHandler())
        logger.setLevel(level)
        try:
            yield _per_event(logger.debug, "%s %s", PROBE, PROBE_MEASUREMENTS)
        finally:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.setLevel(old_level)

    return run


@contextlib.contextmanager
def _filtered_logging(env: Env) -> Iterator[Timed]:
    logger = logging.getLogger("bench.snakepit.telemetry")
    logger.setLevel(logging.WARNING)
    handler_id = telemetry.attach_logging(logger, handler_id="bench-logging")
    try:
        yield _per_event(
            telemetry.execute, ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA, loop=SHORT_LOOP
        )
    finally:
        telemetry.detach_logging(handler_id)
        logger.setLevel(logging.NOTSET)


@contextlib.contextmanager
def _prometheus(env: Env) -> Iterator[Timed]:
    metrics = telemetry.PrometheusMetrics().attach()
    try:
        yield _per_event(
            telemetry.execute, ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA, loop=SHORT_LOOP
        )
        labels = {"function": "demo:f", "outcome": "ok"}
        if not metrics.registry.get_sample_value("snakepit_calls_total", labels):
            raise BenchError("the Prometheus handler counted no call")
    finally:
        metrics.detach()


@contextlib.contextmanager
def _span(env: Env) -> Iterator[Timed]:
    def block() -> None:
        with telemetry.span(("bench", "block"), {"who": "bench"}):
            pass

    yield _per_event(block, loop=SHORT_LOOP)


def _snakepit_only(name: str, title: str, label: str, prepare: Prepare, **kw: Any) -> Case:
    return Case(name, title, (Impl("snakepit", label, prepare, **kw),), group="telemetry-bus")


def telemetry_cases() -> tuple[Case, ...]:
    """The event bus per event: ``execute`` against an empty call and stdlib logging, and more.

    Each round is a loop of :data:`LOOP` events (loop overhead included on
    every side); read the medians as time per event.
    """
    execute = "snakepit.telemetry.execute"
    enabled = Timed(
        telemetry.enabled,
        (PROBE,),
        rounds=200,
        quick_rounds=30,
        warmup=1,
        iterations=SHORT_LOOP,
        quick_iterations=SHORT_LOOP,
        check=lambda on: expect(on, False, "enabled() with no handler"),
    )
    return (
        Case(
            "telemetry-no-handler",
            "telemetry.execute, no handler",
            (
                Impl("snakepit", execute, _probe_free),
                Impl(
                    "empty-call",
                    "empty function call",
                    timed_only(_per_event(_empty_call, PROBE, PROBE_MEASUREMENTS)),
                ),
                Impl(
                    "logging", "logging.debug, level WARNING", _peer_logging(logging.WARNING, False)
                ),
            ),
            group="telemetry-bus",
        ),
        Case(
            "telemetry-one-handler",
            "telemetry.execute, one trivial handler",
            (
                Impl("snakepit", execute, _probe_handled),
                Impl(
                    "direct-call",
                    "calling the handler directly",
                    timed_only(_per_event(_trivial_handler, PROBE, PROBE_MEASUREMENTS, {}, None)),
                ),
                Impl(
                    "logging",
                    "logging.debug, one trivial handler",
                    _peer_logging(logging.DEBUG, True),
                ),
            ),
            group="telemetry-bus",
        ),
        _snakepit_only(
            "enabled-0",
            "telemetry.enabled, no handler",
            "snakepit.telemetry.enabled",
            timed_only(enabled),
        ),
        _snakepit_only("span-0", "telemetry.span, no handler", "snakepit.telemetry.span", _span),
        _snakepit_only(
            "logging-filtered",
            "call-stop event, logger drops DEBUG",
            "snakepit.telemetry.attach_logging",
            _filtered_logging,
        ),
        _snakepit_only(
            "prometheus",
            "call-stop event, Prometheus handler",
            "snakepit.telemetry.PrometheusMetrics",
            _prometheus,
            requires=("prometheus_client",),
        ),
    )


# ---------------------------------------------- telemetry on a 1 ms call

CALL_SECONDS = 0.001
OVERHEAD = "telemetry-call-1ms"
Recorded = list[tuple[telemetry.Event, telemetry.Measurements, telemetry.Metadata]]


def _busy_pool(env: Env) -> snakepit.Pool:
    pool = env.pool(1)
    for _ in range(50):
        pool.call(tasks.busy, CALL_SECONDS)
    return pool


@contextlib.contextmanager
def _everything() -> Iterator[telemetry.PrometheusMetrics]:
    """The logging handler and the Prometheus metrics handler on every event."""
    metrics = telemetry.PrometheusMetrics()
    metrics.attach()
    handler_id = telemetry.attach_logging()
    try:
        yield metrics
        if b"snakepit_calls_total" not in metrics.render():
            raise BenchError("the handlers saw no call")
    finally:
        telemetry.detach_logging(handler_id)
        metrics.detach()


@contextlib.contextmanager
def _bare_call(env: Env) -> Iterator[Timed]:
    pool = _busy_pool(env)
    # The default failure logger listens to crashes only, never to calls.
    if telemetry.list_handlers(("snakepit", "call")):
        raise BenchError("a handler is attached to snakepit's call events")
    yield Timed(pool.call, (tasks.busy, CALL_SECONDS), rounds=400, quick_rounds=50, warmup=20)


@contextlib.contextmanager
def _instrumented_call(env: Env) -> Iterator[Timed]:
    pool = _busy_pool(env)
    with _everything():
        yield Timed(pool.call, (tasks.busy, CALL_SECONDS), rounds=400, quick_rounds=50, warmup=20)


@contextlib.contextmanager
def _replayed_events(env: Env) -> Iterator[Timed]:
    pool = _busy_pool(env)
    recorded: Recorded = []
    telemetry.attach_many(
        "bench-recorder", telemetry.ALL_EVENTS, lambda e, m, md, c: recorded.append((e, m, md))
    )
    try:
        pool.call(tasks.busy, CALL_SECONDS)
    finally:
        telemetry.detach("bench-recorder")
    names = [event[1:] for event, _, _ in recorded]
    if ("call", "start") not in names or ("call", "stop") not in names:
        raise BenchError(f"one call emitted {names}")

    def replay() -> None:
        for event, measurements, metadata in recorded:
            telemetry.execute(event, measurements, metadata)

    with _everything():
        yield Timed(
            replay, rounds=200, quick_rounds=30, warmup=5, iterations=20, quick_iterations=20
        )


def overhead_cases() -> tuple[Case, ...]:
    """What full instrumentation costs a 1 ms call (the worker spins for 1 ms).

    ``events-instrumented`` replays the events one real call emitted through
    the logging and Prometheus handlers: its median over the bare call's is
    the overhead (run-to-run noise of the call itself, 1-3 %, is larger than
    the effect, which is why ``snakepit-instrumented`` is information only).
    """
    prometheus = ("prometheus_client",)
    return (
        Case(
            OVERHEAD,
            "1 ms call, telemetry handlers",
            (
                Impl("snakepit", "snakepit.Pool, no handler", _bare_call),
                Impl(
                    "events-instrumented",
                    "its events through all handlers",
                    _replayed_events,
                    requires=prometheus,
                ),
                Impl(
                    "snakepit-instrumented",
                    "snakepit.Pool, all handlers",
                    _instrumented_call,
                    requires=prometheus,
                ),
            ),
            workers=1,
            targets=(
                vs(
                    OVERHEAD,
                    "1 ms call: handler work for its events / the call",
                    0.01,
                    "< 1% overhead",
                    impl="events-instrumented",
                    peer="snakepit",
                ),
                vs(
                    OVERHEAD,
                    "1 ms call end to end: all handlers / none",
                    None,
                    impl="snakepit-instrumented",
                    peer="snakepit",
                ),
            ),
        ),
    )


# ---------------------------------------------------------------- hardware

COLD_TARGET_S = 0.200
CACHED_TARGET_S = 50e-6


@contextlib.contextmanager
def _detect_cold(env: Env) -> Iterator[Timed]:
    def check(found: hardware.HardwareInfo) -> None:
        expect(found.devices[-1], "cpu", "last device")

    hardware.clear_cache()
    try:
        yield Timed(
            hardware.detect,
            rounds=20,
            quick_rounds=5,
            warmup=1,
            setup=hardware.clear_cache,
            check=check,
        )
    finally:
        hardware.clear_cache()


@contextlib.contextmanager
def _detect_cached(env: Env) -> Iterator[Timed]:
    hardware.clear_cache()
    first = hardware.detect()

    def check(found: hardware.HardwareInfo) -> None:
        if found is not first:
            raise BenchError("detect() did not answer from its cache")

    try:
        yield Timed(
            hardware.detect,
            rounds=200,
            quick_rounds=30,
            warmup=1,
            iterations=100,
            quick_iterations=100,
            check=check,
        )
    finally:
        hardware.clear_cache()


def hardware_cases() -> tuple[Case, ...]:
    """``hardware.detect()`` right after ``clear_cache()`` (NVML, the vendor tools, /proc)
    and served from its cache."""
    return (
        Case(
            "detect-cold",
            "hardware.detect(), cold",
            (Impl("snakepit", "snakepit.hardware.detect", _detect_cold),),
            group="hardware-detect",
            targets=(
                seconds(
                    "detect-cold", "hardware.detect() cold", COLD_TARGET_S, "< 200 ms without GPUs"
                ),
            ),
        ),
        Case(
            "detect-cached",
            "hardware.detect(), cached",
            (Impl("snakepit", "snakepit.hardware.detect", _detect_cached),),
            group="hardware-detect",
            targets=(
                seconds("detect-cached", "hardware.detect() cached", CACHED_TARGET_S, "< 50 us"),
            ),
        ),
    )
