"""The real command runner: output, missing tools, and tools that hang (real subprocesses)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from snakepit.hardware import CommandResult, Sources, detect, run_command
from snakepit.hardware._sources import read_text

from ._doubles import machine

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """A file a test tool writes its pids to; whatever is still alive is killed after."""
    path = tmp_path / "pids"
    yield path
    if path.exists():
        for pid in map(int, path.read_text().split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_runs_a_tool_and_captures_output() -> None:
    result = run_command(
        [
            sys.executable,
            "-c",
            "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)",
        ],
        10.0,
    )
    assert result == CommandResult(3, "out\n", "err\n")


def test_tools_run_in_the_c_locale() -> None:
    result = run_command([sys.executable, "-c", "import os; print(os.environ['LC_ALL'])"], 10.0)
    assert result.stdout == "C\n"


def test_missing_tool_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError, match="snakepit-no-such-tool not found on PATH"):
        run_command(["snakepit-no-such-tool"], 1.0)


def test_empty_command_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty command"):
        run_command([], 1.0)


def test_hanging_tool_times_out_and_is_killed_with_its_children(pid_file: Path) -> None:
    # The tool starts a child in its own process group, then both sleep.
    script = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen({SLEEPER!r})\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not answer within 0\.5 s"):
        run_command([sys.executable, "-c", script], 0.5)
    assert time.monotonic() - started < 3.0
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5.0
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(_gone(pid) for pid in pids)


def test_a_grandchild_holding_the_pipe_cannot_make_it_hang(pid_file: Path) -> None:
    # The escaped grandchild (new session) keeps stdout open; the runner must not wait for it.
    script = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen({SLEEPER!r}, start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_command([sys.executable, "-c", script], 0.5)
    assert time.monotonic() - started < 3.0
    tool_pid = int(pid_file.read_text().split()[0])
    assert _gone(tool_pid)


def test_detection_with_a_hanging_nvidia_smi_degrades_quickly() -> None:
    """nvidia-smi replaced by a real process that sleeps: CUDA is absent, with the reason."""

    def run(argv: Sequence[str], timeout: float) -> CommandResult:
        if Path(argv[0]).name == "nvidia-smi":
            return run_command(SLEEPER, timeout)
        raise FileNotFoundError(argv[0])

    # Children started before (multiprocessing's resource tracker, say) are not ours.
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    info = detect(machine(run=run, timeout=0.3))
    assert time.monotonic() - started < 2.0
    assert not info.cuda.available
    assert info.cuda.reason is not None
    assert info.cuda.reason.endswith("nvidia-smi did not answer within 0.3 s")
    assert info.reasons["cuda"] == info.cuda.reason
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before
    assert not left


def test_read_text_of_missing_and_present_files(tmp_path: Path) -> None:
    assert read_text(str(tmp_path / "missing")) is None
    assert read_text(str(tmp_path)) is None  # a directory
    (tmp_path / "f").write_text("hello")
    assert read_text(str(tmp_path / "f")) == "hello"


def test_default_sources_read_this_machine() -> None:
    sources = Sources()
    assert sources.system_name == os.uname().sysname
    assert sources.machine_name == os.uname().machine
    assert sources.env is os.environ
    assert sources.timeout == 2.0
