"""Ctrl-C in the supervisor leaves no worker region in /dev/shm (the exit
hook waits for the readers that unlink dead workers' regions)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from snakepit.zero_copy import list_regions

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import snakepit
    from tests.pool import _tasks

    pool = snakepit.Pool(workers=2)  # no `with`: the exit hook cleans up
    kept = [pool.call(_tasks.shared_result, 1 << 16) for _ in range(4)]
    print(" ".join(map(str, pool.worker_pids())), flush=True)
    pool.submit(time.sleep, 30)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
    """
)


@pytest.mark.parametrize("attempt", range(6))
def test_ctrl_c_in_the_supervisor_leaves_no_worker_region(attempt: int) -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode in (1, -signal.SIGINT), process.stderr
    assert "KeyboardInterrupt" in process.stderr
    workers = process.stdout.split()
    assert len(workers) == 2
    left = [name for name in list_regions() if name.split("-")[1] in workers]
    assert not left, left
