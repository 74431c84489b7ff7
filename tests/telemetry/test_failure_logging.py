"""Failures are never silent: WARNING records on the ``snakepit`` logger by default."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import CircuitOpenError, WorkerCrashedError
from snakepit.pool import CircuitBreakerRegistry
from snakepit.telemetry import _events as ev
from snakepit.telemetry import _failures

from ..pool import _tasks

ROOT = Path(__file__).resolve().parents[2]


class Records(logging.Handler):
    """Keeps the records of the ``snakepit`` logger tree."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at_least(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("snakepit")
    handler = Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_a_crash_with_no_logging_configured_prints_one_warning_line() -> None:
    script = textwrap.dedent(
        """
        import snakepit
        from tests.pool import _tasks

        with snakepit.Pool(1) as pool:
            try:
                pool.call(_tasks.segfault)
            except snakepit.errors.WorkerCrashedError:
                pass
            assert pool.call(_tasks.add, 1, 2) == 3
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "crashed: segfault" in lines[0]
    assert "tests.pool._tasks:segfault" in lines[0]


def test_a_crash_is_one_warning_record_by_default(records: Records) -> None:
    with snakepit.Pool(1) as pool, pytest.raises(WorkerCrashedError):
        pool.call(_tasks.exit_3)
    warnings = records.at_least(logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "exit code 3" in warnings[0]


def test_with_attach_logging_each_failure_is_one_record(records: Records) -> None:
    handler_id = telemetry.attach_logging(handler_id="test-failure-logging")
    try:
        with snakepit.Pool(1) as pool, pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
    finally:
        telemetry.detach_logging("test-failure-logging")
    assert handler_id == "test-failure-logging"
    at_info = records.at_least(logging.INFO)
    crash_lines = [line for line in at_info if "segfault" in line]
    assert len(crash_lines) == 1, at_info
    assert len(records.at_least(logging.WARNING)) == 1


def test_failure_logging_resumes_after_attach_logging_is_detached(records: Records) -> None:
    telemetry.attach_logging(handler_id="test-failure-logging")
    telemetry.detach_logging("test-failure-logging")
    with snakepit.Pool(1) as pool, pytest.raises(WorkerCrashedError):
        pool.call(_tasks.abort)
    assert len(records.at_least(logging.WARNING)) == 1


def test_log_failures_false_turns_the_records_off(records: Records) -> None:
    _failures.log_failures(False)
    try:
        with snakepit.Pool(1) as pool, pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        assert records.at_least(logging.WARNING) == []
    finally:
        _failures.log_failures(True)
    assert any(
        info.handler_id == "snakepit-failures" for info in telemetry.list_handlers(("snakepit",))
    )


def test_an_opening_circuit_is_a_warning(records: Records) -> None:
    circuits = CircuitBreakerRegistry(failure_threshold=1, open_duration=60)
    with snakepit.Pool(1, circuit_breaker=circuits) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        with pytest.raises(CircuitOpenError):
            pool.call(_tasks.add, 1, 2)
    warnings = records.at_least(logging.WARNING)
    assert any("circuit global opened" in line for line in warnings), warnings
    assert len(warnings) == 2  # the crash and the opening, once each


@pytest.mark.parametrize(
    ("event", "measurements", "metadata", "level"),
    [
        (ev.WORKER_RESTART, {"delay": 0.0}, {}, None),
        (ev.WORKER_RESTART, {"delay": 0.4}, {}, logging.WARNING),
        (ev.HEALTH_ALERT, {}, {"severity": "warning"}, logging.WARNING),
        (ev.HEALTH_ALERT, {}, {"severity": "critical"}, logging.ERROR),
        (ev.CIRCUIT_CLOSE, {}, {}, logging.INFO),
        (ev.CALL_STOP, {}, {}, None),
    ],
)
def test_levels_of_failure_events(
    event: tuple[str, ...], measurements: dict[str, float], metadata: dict[str, str], level: int
) -> None:
    assert _failures._level(event, measurements, metadata) == level
