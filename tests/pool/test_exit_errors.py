"""The error a call gets when its worker dies under it or is killed for its timeout."""

from __future__ import annotations

import signal

import pytest

from snakepit.errors import ExitKind, WorkerCrashedError, WorkerTimeoutError
from snakepit.pool import ExitInfo
from snakepit.pool._restarts import exit_error

_TIMEOUT_EXIT = ExitInfo(ExitKind.timeout, signal.SIGKILL, None, "killed for its timeout")


@pytest.mark.parametrize("timeout", [0.25, 3.0, 120.0])
def test_a_timeout_names_its_limit(timeout: float) -> None:
    error = exit_error(_TIMEOUT_EXIT, timeout=timeout, worker_id=1, pid=42, native_traceback=None)
    assert isinstance(error, WorkerTimeoutError)
    assert f"its {timeout} s timeout" in error.message
    assert error.timeout == timeout


def test_a_timeout_without_its_call_does_not_print_none() -> None:
    # The reply beat the kill: the exit is still a timeout, but no call is left.
    error = exit_error(_TIMEOUT_EXIT, timeout=None, worker_id=1, pid=42, native_traceback=None)
    assert isinstance(error, WorkerTimeoutError)
    assert "None" not in error.message
    assert "exceeded its timeout" in error.message


def test_a_crash_keeps_its_classification() -> None:
    info = ExitInfo(ExitKind.segfault, signal.SIGSEGV, None, "segmentation fault")
    error = exit_error(info, timeout=None, worker_id=0, pid=7, native_traceback="stack")
    assert isinstance(error, WorkerCrashedError)
    assert (error.exit_kind, error.signal, error.remote_traceback) == (
        "segfault",
        signal.SIGSEGV,
        "stack",
    )
