"""Tests for worker exit classification."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from snakepit import errors, pool
from snakepit.pool._exits import ExitInfo, ExitKind, classify_exit, oom_kill_count


@pytest.mark.parametrize(
    ("returncode", "kind", "sig", "code"),
    [
        (0, ExitKind.normal, None, 0),
        (1, ExitKind.python_error, None, 1),
        (2, ExitKind.unknown, None, 2),
        (3, ExitKind.unknown, None, 3),
        (-signal.SIGSEGV, ExitKind.segfault, signal.SIGSEGV, None),
        (-signal.SIGABRT, ExitKind.abort, signal.SIGABRT, None),
        (-signal.SIGBUS, ExitKind.bus_error, signal.SIGBUS, None),
        (-signal.SIGFPE, ExitKind.floating_point_error, signal.SIGFPE, None),
        (-signal.SIGKILL, ExitKind.killed, signal.SIGKILL, None),
        (-signal.SIGTERM, ExitKind.killed, signal.SIGTERM, None),
        (-signal.SIGINT, ExitKind.killed, signal.SIGINT, None),
        (-signal.SIGUSR1, ExitKind.unknown, signal.SIGUSR1, None),
        (-200, ExitKind.unknown, 200, None),
        (None, ExitKind.unknown, None, None),
    ],
)
def test_classify_exit_table(
    returncode: int | None, kind: ExitKind, sig: int | None, code: int | None
) -> None:
    info = classify_exit(returncode)
    assert info.kind is kind
    assert info.signal == sig
    assert info.exit_code == code
    assert info.description
    assert info.crashed is (kind is not ExitKind.normal)


def test_sigkill_mentions_oom_killer_as_possible_cause() -> None:
    plain = classify_exit(-signal.SIGKILL)
    assert "OOM killer" in plain.description
    assert "likely" in plain.description
    oom = classify_exit(-signal.SIGKILL, oom_killed=True)
    assert oom.kind is ExitKind.killed
    assert oom.description.startswith("killed by the kernel OOM killer")


def test_timeout_overrides_signal_but_keeps_it() -> None:
    info = classify_exit(-signal.SIGKILL, timed_out=True)
    assert info.kind is ExitKind.timeout
    assert info.signal == signal.SIGKILL
    assert "SIGKILL" in info.description
    assert classify_exit(None, timed_out=True).kind is ExitKind.timeout
    assert classify_exit(-signal.SIGTERM, timed_out=True).kind is ExitKind.timeout


@pytest.mark.parametrize("returncode", [-signal.SIGINT, -signal.SIGKILL, 0, 1, None])
def test_a_requested_stop_is_cancelled_whatever_ended_it(returncode: int | None) -> None:
    info = classify_exit(returncode, cancelled=True)
    assert info.kind is ExitKind.cancelled
    assert not info.crashed  # a stop on request is no crash
    assert "cancelled" in info.description
    assert info.signal == (-returncode if returncode is not None and returncode < 0 else None)
    # Without the flag the same SIGINT is somebody else's doing.
    assert classify_exit(-signal.SIGINT).kind is ExitKind.killed


def test_exit_kind_is_a_plain_string_enum() -> None:
    assert ExitKind.segfault == "segfault"
    assert str(ExitKind.segfault) == "segfault"
    assert f"{ExitKind.floating_point_error}" == "floating_point_error"
    assert ExitKind("bus_error") is ExitKind.bus_error
    assert not hasattr(ExitKind, "SEGFAULT")  # one spelling: lower-case members only
    assert ExitKind is errors.ExitKind is pool.ExitKind  # defined once, in errors
    assert [k.value for k in ExitKind] == [
        "normal",
        "python_error",
        "segfault",
        "abort",
        "bus_error",
        "floating_point_error",
        "killed",
        "timeout",
        "exit",
        "cancelled",
        "lost",
        "unknown",
    ]


def test_exit_info_is_frozen() -> None:
    info = classify_exit(0)
    assert isinstance(info, ExitInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.kind = ExitKind.abort  # type: ignore[misc]


# Each child disables core dumps first so the crashes leave nothing behind.
_NO_CORE = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "

_CHILDREN: dict[str, tuple[str, ExitKind]] = {
    "abort": ("import os; os.abort()", ExitKind.abort),
    "segfault": ("import ctypes; ctypes.memset(0, 1, 1)", ExitKind.segfault),
    "exit3": ("import os; os._exit(3)", ExitKind.unknown),
    "exception": ("raise ValueError('boom')", ExitKind.python_error),
    "sigkill": ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", ExitKind.killed),
    "sigfpe": (
        "import os, signal; os.kill(os.getpid(), signal.SIGFPE)",
        ExitKind.floating_point_error,
    ),
    "clean": ("pass", ExitKind.normal),
}


def test_real_process_exits_are_classified() -> None:
    # Start all children at once and reap them together to keep this fast.
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _NO_CORE + code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, (code, _) in _CHILDREN.items()
    }
    results = {name: proc.wait(timeout=60) for name, proc in procs.items()}
    for name, (_, kind) in _CHILDREN.items():
        info = classify_exit(results[name])
        assert info.kind is kind, (name, results[name], info)
    assert classify_exit(results["exit3"]).exit_code == 3
    assert classify_exit(results["segfault"]).signal == signal.SIGSEGV
    assert classify_exit(results["abort"]).signal == signal.SIGABRT


def test_oom_kill_count_reads_memory_events(tmp_path: Path) -> None:
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 3\noom_group_kill 0\n")
    assert oom_kill_count(events) == 3
    events.write_text("low 0\noom_kill 7\n")
    assert oom_kill_count(str(events)) == 7


def test_oom_kill_count_unavailable(tmp_path: Path) -> None:
    assert oom_kill_count(tmp_path / "missing") is None
    no_counter = tmp_path / "memory.events"
    no_counter.write_text("low 0\nhigh 0\n")
    assert oom_kill_count(no_counter) is None
    garbage = tmp_path / "garbage.events"
    garbage.write_text("oom_kill lots\n")
    assert oom_kill_count(garbage) is None


def test_oom_kill_count_default_source_is_int_or_none() -> None:
    value = oom_kill_count()
    assert value is None or (isinstance(value, int) and value >= 0)
