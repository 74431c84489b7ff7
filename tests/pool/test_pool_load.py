"""Load with random injected crashes: every future completes, counts add up."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future

import pytest

import snakepit
from snakepit.errors import WorkerCrashedError

from . import _tasks

THREADS = 4
CALLS_PER_THREAD = 500
CRASH_RATE = 0.01


def test_thousands_of_calls_with_random_crashes() -> None:
    rng = random.Random(1234)
    plan = [
        [(i, rng.random() < CRASH_RATE) for i in range(CALLS_PER_THREAD)] for _ in range(THREADS)
    ]
    futures: list[list[Future[int]]] = [[] for _ in range(THREADS)]
    with snakepit.Pool(workers=2, worker_max_crashes=10_000) as pool:

        def submit_all(index: int) -> None:
            for value, crash in plan[index]:
                futures[index].append(pool.submit(_tasks.work_or_crash, value, crash))

        threads = [threading.Thread(target=submit_all, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ok = crashed = 0
        for index in range(THREADS):
            for (value, crash), future in zip(plan[index], futures[index], strict=True):
                if crash:
                    with pytest.raises(WorkerCrashedError) as info:
                        future.result(timeout=120)
                    assert info.value.exit_kind == "segfault"
                    crashed += 1
                else:
                    # A crash fails only the call that crashed, never a bystander.
                    assert future.result(timeout=120) == value * 2
                    ok += 1
        expected_crashes = sum(crash for row in plan for _, crash in row)
        assert expected_crashes > 5
        assert crashed == expected_crashes
        assert ok + crashed == THREADS * CALLS_PER_THREAD
        stats = pool.stats()
        assert stats["crashes"] == expected_crashes
        assert stats["completed"] == ok
        assert stats["failed"] == expected_crashes
        assert stats["queue_depth"] == 0
