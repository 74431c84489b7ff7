"""A pool dropped without shutdown() finishes its calls, then ends its workers and threads."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

import snakepit
from tests.pool import _tasks
from tests.pool._observe import gone

_ROOT = Path(__file__).resolve().parents[2]


def _submit_and_drop(count: int) -> tuple[list[int], list[Future[float]]]:
    """Start a pool, queue more calls than it has workers, and let go of it."""
    pool = snakepit.Pool(1, preload=[])
    futures = [pool.submit(_tasks.slow_total, np.full(2, float(i)), 0.05) for i in range(count)]
    return pool.worker_pids(), futures


def _pool_threads(before: set[threading.Thread]) -> list[str]:
    return [
        t.name for t in threading.enumerate() if t not in before and t.name != "snakepit-telemetry"
    ]


def test_a_dropped_pool_finishes_its_calls_then_ends() -> None:
    before = set(threading.enumerate())
    pids, futures = _submit_and_drop(4)
    gc.collect()
    # Calls queued behind the first still run: their futures were not dropped.
    assert [f.result(timeout=30) for f in futures] == [0.0, 2.0, 4.0, 6.0]
    assert all(gone(pid) for pid in pids)
    deadline = time.monotonic() + 10
    while _pool_threads(before) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _pool_threads(before) == []


def test_a_dropped_pool_with_a_running_call_leaves_nothing_at_exit() -> None:
    script = textwrap.dedent(
        """
        import gc, sys
        import numpy as np
        import snakepit
        from tests.pool import _tasks
        pool = snakepit.Pool(1, preload=[])
        print(pool.worker_pids()[0], flush=True)
        pool.submit(_tasks.slow_total, np.ones(2), 60.0)
        del pool
        gc.collect()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert gone(int(done.stdout.split()[0]))
