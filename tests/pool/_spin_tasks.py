"""Tasks that report how the worker running them will wait for its next call."""

from __future__ import annotations

import gc
import time

from snakepit.worker._main import Worker


def spin_after_this_call(seconds: float = 0.0) -> float:
    """The poll time this worker set for its next wait (after ``seconds`` of work)."""
    time.sleep(seconds)
    workers = [obj for obj in gc.get_objects() if type(obj) is Worker]
    assert len(workers) == 1, workers
    return workers[0].reader.spin_seconds
