"""The logging handler: levels, messages, slow-call warnings, overrides."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from snakepit import telemetry
from snakepit.telemetry import _events as ev
from snakepit.telemetry._logging import DEFAULT_LEVELS, DEFAULT_LOGGER, format_event

HANDLER_ID = "test-logging"
LOGGER = "test.snakepit.telemetry.logging"

STOP_MEASUREMENTS = {
    "duration": 0.0123,
    "queue_time": 0.0001,
    "serialize_time": 0.0002,
    "python_time": 0.0119,
    "deserialize_time": 0.0001,
    "attempts": 1.0,
}
STOP_METADATA = {"call_id": 7, "function": "demo:f", "pool": "p", "worker_id": 0, "pid": 1}


@pytest.fixture(autouse=True)
def _no_handler_left_attached() -> Iterator[None]:
    """The bus is global: every test detaches what it attached."""
    before = {info.handler_id for info in telemetry.list_handlers()}
    yield
    assert {info.handler_id for info in telemetry.list_handlers()} == before


class RecordList(logging.Handler):
    """A logging handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[tuple[int, str]]:
        return [(record.levelno, record.getMessage()) for record in self.records]


@pytest.fixture
def records() -> Iterator[RecordList]:
    logger = logging.getLogger(LOGGER)
    handler = RecordList()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        telemetry.detach_logging(HANDLER_ID)


def test_call_stop_is_a_readable_debug_line(records: RecordList) -> None:
    assert telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID) == HANDLER_ID
    telemetry.execute(ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)
    assert records.lines() == [
        (
            logging.DEBUG,
            "call demo:f took 12.3 ms (queue 0.1, serialise 0.2, python 11.9, "
            "deserialise 0.1) on worker 0",
        )
    ]
    assert records.records[0].name == LOGGER


def test_slow_call_is_one_warning_naming_function_and_timings(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID, slow_call_threshold=0.5)
    slow = {**STOP_MEASUREMENTS, "duration": 2.5, "python_time": 2.4}
    telemetry.execute(ev.CALL_STOP, slow, STOP_METADATA)
    telemetry.execute(ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)  # fast: DEBUG
    (level, message), (fast_level, _) = records.lines()
    assert level == logging.WARNING
    assert message.startswith("slow call: call demo:f took 2.50 s (queue 0.1,")
    assert "python 2400.0" in message
    assert message.endswith("on worker 0 (threshold 500.0 ms)")
    assert fast_level == logging.DEBUG


def test_slow_call_warning_can_be_turned_off(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID, slow_call_threshold=None)
    telemetry.execute(ev.CALL_STOP, {**STOP_MEASUREMENTS, "duration": 100.0}, STOP_METADATA)
    assert [level for level, _ in records.lines()] == [logging.DEBUG]


def test_failures_are_warnings_and_crashes_errors(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID)
    telemetry.execute(
        ev.CALL_EXCEPTION,
        {"duration": 0.002, "attempts": 3.0},
        {"function": "demo:g", "worker_id": 1, "kind": "ValueError", "reason": "bad"},
    )
    telemetry.execute(
        ev.WORKER_CRASH,
        {"uptime": 3.2},
        {"worker_id": 0, "pid": 4242, "exit_kind": "segfault", "signal": 11, "call_id": 17},
    )
    telemetry.execute(ev.CIRCUIT_OPEN, {}, {"circuit": "global", "previous": "closed"})
    assert records.lines() == [
        (
            logging.WARNING,
            "call demo:g failed in 2.0 ms after 3 attempts on worker 1: ValueError: bad",
        ),
        (
            logging.ERROR,
            "worker 0 (pid 4242) crashed: segfault (signal 11, running call 17) after 3.20 s",
        ),
        (logging.WARNING, "circuit global opened: calls fail fast until it resets"),
    ]


def test_a_remote_python_error_is_named_once(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID)
    telemetry.execute(
        ev.CALL_EXCEPTION,
        {"duration": 0.0015, "attempts": 1.0},
        {
            "function": "builtins:int",
            "worker_id": 0,
            "kind": "PythonError",
            "reason": "ValueError: x",
        },
    )
    assert records.lines() == [
        (logging.WARNING, "call builtins:int failed in 1.5 ms on worker 0: ValueError: x")
    ]


def test_health_alert_level_follows_severity(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID)
    for severity in ("warning", "critical"):
        telemetry.execute(
            ev.HEALTH_ALERT,
            {"value": 0.5, "threshold": 0.2},
            {"alert": "crash_rate", "severity": severity, "subject": "worker 0", "message": "m"},
        )
    assert [level for level, _ in records.lines()] == [logging.WARNING, logging.ERROR]
    assert "crash_rate on worker 0" in records.lines()[0][1]


def test_level_overrides_by_tuple_or_dotted_name(records: RecordList) -> None:
    telemetry.attach_logging(
        LOGGER,
        handler_id=HANDLER_ID,
        level_overrides={ev.CALL_STOP: logging.INFO, "snakepit.worker.crash": "CRITICAL"},
    )
    telemetry.execute(ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)
    telemetry.execute(ev.WORKER_CRASH, {"uptime": 1.0}, {"exit_kind": "oom"})
    assert [level for level, _ in records.lines()] == [logging.INFO, logging.CRITICAL]


def test_bad_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="not an event"):
        telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID, level_overrides={"x.y": 10})
    with pytest.raises(ValueError, match="unknown logging level"):
        telemetry.attach_logging(
            LOGGER, handler_id=HANDLER_ID, level_overrides={ev.CALL_STOP: "LOUD"}
        )
    with pytest.raises(ValueError, match="slow_call_threshold"):
        telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID, slow_call_threshold=-1)
    assert all(info.handler_id != HANDLER_ID for info in telemetry.list_handlers())


def test_messages_below_the_logger_level_are_not_formatted(records: RecordList) -> None:
    logging.getLogger(LOGGER).setLevel(logging.INFO)
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID)
    telemetry.execute(ev.CALL_STOP, STOP_MEASUREMENTS, STOP_METADATA)
    telemetry.execute(ev.WORKER_START, {"startup_time": 0.25}, {"worker_id": 3, "pid": 9})
    assert records.lines() == [(logging.INFO, "worker 3 (pid 9) started in 250.0 ms")]


def test_default_logger_and_detach(records: RecordList) -> None:
    default = logging.getLogger(DEFAULT_LOGGER)
    mine = RecordList()
    default.addHandler(mine)
    default.setLevel(logging.DEBUG)
    try:
        telemetry.attach_logging(handler_id=HANDLER_ID)
        telemetry.execute(ev.CIRCUIT_CLOSE, {}, {"circuit": "global"})
        assert telemetry.detach_logging(HANDLER_ID) is True
        assert telemetry.detach_logging(HANDLER_ID) is False
        telemetry.execute(ev.CIRCUIT_CLOSE, {}, {"circuit": "global"})
    finally:
        default.removeHandler(mine)
        default.setLevel(logging.NOTSET)
    assert mine.lines() == [(logging.INFO, "circuit global closed again")]
    assert records.lines() == []


def test_malformed_events_are_still_logged_and_never_detach(records: RecordList) -> None:
    telemetry.attach_logging(LOGGER, handler_id=HANDLER_ID)
    telemetry.execute(ev.CALL_STOP, {}, {})
    telemetry.execute(ev.POOL_SIZE, {"size": "many"}, {})  # type: ignore[dict-item]
    assert len(records.records) == 2
    assert records.lines()[0] == (logging.DEBUG, "call ? took ?")
    assert any(info.handler_id == HANDLER_ID for info in telemetry.list_handlers())


@pytest.mark.parametrize("spec", ev.CATALOGUE, ids=lambda spec: spec.dotted)
def test_every_catalogued_event_has_a_level_and_its_own_message(spec: ev.EventSpec) -> None:
    assert spec.name in DEFAULT_LEVELS
    measurements = dict.fromkeys(spec.measurements, 1.0)
    metadata = dict.fromkeys(spec.metadata, "x")
    message = format_event(spec.name, measurements, metadata)
    # The generic fallback starts with the dotted name; a dedicated one does not.
    assert not message.startswith(spec.dotted), message
