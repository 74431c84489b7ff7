"""A call that ends its worker's process is reported as kind ``exit``, with its status."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

import snakepit
from snakepit.errors import ExitKind, WorkerCrashedError
from snakepit.pool._exits import classify_exit

from . import _tasks


def call_sys_exit(code: object) -> None:
    sys.exit(code)


def call_os_exit(code: int) -> None:
    os._exit(code)


def call_builtin_exit(code: int) -> None:
    exit(code)  # the builtin, as a user script would call it


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1) as pool:
        yield pool


@pytest.mark.parametrize(
    ("function", "code", "status"),
    [
        (call_sys_exit, 4, 4),
        (call_sys_exit, 0, 0),
        (call_sys_exit, None, 0),
        (call_sys_exit, "bye", 1),  # Python prints the message and exits 1
        (call_sys_exit, 1, 1),
        (call_os_exit, 3, 3),
        (call_os_exit, 0, 0),
        (call_os_exit, 1, 1),
        (call_os_exit, 255, 255),
        (call_builtin_exit, 7, 7),
    ],
)
def test_an_exit_in_a_call_is_kind_exit_with_its_status(
    pool: snakepit.Pool, function: object, code: object, status: int
) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(function, code)  # type: ignore[call-overload]
    error = info.value
    assert error.exit_kind == "exit"
    assert error.exit_code == status
    assert error.signal is None
    assert f"exit status {status}" in str(error)
    assert "raise an exception instead" in (error.suggestion or "")
    assert pool.call(_tasks.add, 1, 2) == 3  # replaced, as after any crash


def test_a_signal_during_a_call_keeps_its_own_kind(pool: snakepit.Pool) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(_tasks.segfault)
    assert info.value.exit_kind == "segfault"


@pytest.mark.parametrize("code", [0, 1, 3])
def test_outside_a_call_statuses_keep_the_worker_kinds(code: int) -> None:
    info = classify_exit(code)
    assert info.kind in {ExitKind.normal, ExitKind.python_error, ExitKind.unknown}
    assert info.during_call().kind is ExitKind.exit
    assert info.during_call().exit_code == code
    assert classify_exit(-11).during_call().kind is ExitKind.segfault
    assert classify_exit(-9, timed_out=True).during_call().kind is ExitKind.timeout


def test_native_crash_advice_points_at_the_attached_stack(pool: snakepit.Pool) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(_tasks.segfault)
    error = info.value
    assert error.remote_traceback
    assert "remote_traceback" in (error.suggestion or "")
    assert "PYTHONFAULTHANDLER" not in (error.suggestion or "")
    bare = WorkerCrashedError("x", exit_kind="segfault")
    assert "PYTHONFAULTHANDLER=1" in (bare.suggestion or "")
