"""The forked-template start-up helper: it times real forks and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from snakepit._bench import _fork_startup
from snakepit._bench._model import BenchError, Env

_ROOT = str(Path(__file__).resolve().parents[1])


def test_the_helper_starts_forked_pools_and_ends_with_its_case() -> None:
    prepare = _fork_startup.forked_startup(2, rounds=2, quick=1)
    with prepare(Env()) as timed:
        assert timed.call() == "started"
        assert timed.setup is not None
        timed.setup()
        assert timed.call() == "started"
        helpers = [
            p for p in psutil.Process().children() if "_fork_startup" in " ".join(p.cmdline())
        ]
        assert len(helpers) == 1
        family = [helpers[0], *helpers[0].children(recursive=True)]
        assert len(family) >= 4  # the helper, its pool's template, two workers
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive


def test_a_helper_that_answers_otherwise_fails_the_case() -> None:
    helper = _fork_startup._Helper(1)
    try:
        with pytest.raises(BenchError, match="start-up helper"):
            helper.ask("start", "something else")
    finally:
        helper.close()
    assert helper.proc.returncode == 0


def test_a_helper_that_does_not_answer_fails_the_case_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    helper = _fork_startup._Helper(1)
    monkeypatch.setattr(_fork_startup, "_HELPER_TIMEOUT", 0.5)
    try:
        os.kill(helper.proc.pid, signal.SIGSTOP)  # alive, and silent
        with pytest.raises(BenchError, match="did not answer"):
            helper.ask("start", "started")
    finally:
        helper.close()
    assert helper.proc.returncode is not None


def test_the_helper_and_its_pools_end_when_the_benchmark_process_is_killed() -> None:
    script = textwrap.dedent(
        """
        import time
        from snakepit._bench import _fork_startup
        helper = _fork_startup._Helper(2)
        helper.ask("start", "started")
        print(helper.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=_ROOT
    ) as parent:
        family: list[psutil.Process] = []
        try:
            assert parent.stdout is not None
            helper = psutil.Process(int(parent.stdout.readline()))
            family = [helper, *helper.children(recursive=True)]
            assert len(family) >= 4
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait()
            _, alive = psutil.wait_procs(family, timeout=20)
            assert not alive
        finally:
            parent.kill()
            for process in family:
                if process.is_running():
                    process.kill()
