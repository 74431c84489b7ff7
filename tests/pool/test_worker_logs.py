"""A worker's ``logging`` records reach the supervisor's loggers, labelled."""

from __future__ import annotations

import logging
import os

import pytest

import snakepit
from snakepit.pool._worker_logs import relay

from . import _log_tasks as tasks


def _forwarded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("snakepit_test")]


def test_worker_records_arrive_under_their_names_with_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with snakepit.Pool(1) as pool:
        pid = pool.worker_pids()[0]
        assert pool.call(tasks.log_some, "3.5") == 1
    warning, error = _forwarded(caplog)
    assert (warning.name, warning.levelno, warning.getMessage()) == (
        "snakepit_test.model",
        logging.WARNING,
        "loss is 3.5",
    )
    assert (warning.worker_id, warning.worker_pid, warning.process) == (0, pid, pid)  # type: ignore[attr-defined]
    assert warning.funcName == "log_some"
    assert error.name == "snakepit_test.other"
    assert "ZeroDivisionError: boom" in (error.exc_text or "")
    assert pid != os.getpid()


def test_the_workers_own_levels_decide_what_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with snakepit.Pool(1, initializer=tasks.verbose_worker) as pool:
        pool.call(tasks.log_info)
    assert [r.getMessage() for r in _forwarded(caplog)] == ["now shown"]


def test_the_supervisors_levels_still_filter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with snakepit.Pool(1) as pool:
        pool.call(tasks.log_some, "x")
    assert [r.levelno for r in _forwarded(caplog)] == [logging.ERROR]


def test_forward_logging_false_leaves_worker_logging_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with snakepit.Pool(1, forward_logging=False) as pool:
        pool.call(tasks.log_some, "x")
    assert _forwarded(caplog) == []


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        {},
        {"name": "a", "msg": "m", "pathname": "p", "funcName": "f", "threadName": "t"},
        {
            "name": "a",
            "msg": 3,
            "pathname": "p",
            "funcName": "f",
            "threadName": "t",
            "levelno": 30,
            "lineno": 1,
            "created": 1.0,
        },
        {
            "name": "a",
            "msg": "m",
            "pathname": "p",
            "funcName": "f",
            "threadName": "t",
            "levelno": "30",
            "lineno": 1,
            "created": 1.0,
        },
    ],
)
def test_malformed_records_from_a_worker_are_dropped(body: object) -> None:
    assert relay(body, 0, 1) is False
