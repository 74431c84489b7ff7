"""A worker frees a call's arguments after its reply is out (unless the call
had shared arrays, whose references must be settled before the reply)."""

from __future__ import annotations

import time
from pathlib import Path

import snakepit
from tests.pool._slow_free import DiesWhenFreed, SlowToFree, arm, touch


def test_the_reply_does_not_wait_for_the_arguments_to_be_freed(tmp_path: Path) -> None:
    marker = tmp_path / "state"
    with snakepit.Pool(1) as pool:
        value = SlowToFree(str(marker), seconds=2.0)
        assert pool.call(touch, value) == "done"
        # The worker is still freeing its copy of the argument.
        assert marker.read_text() == "called"
        deadline = time.monotonic() + 30
        while marker.read_text() != "freed":
            assert time.monotonic() < deadline, "the worker never freed the argument"
            time.sleep(0.05)
        # The next call waits for nothing else.
        assert pool.call(len, "abc") == 3
        marker.unlink()  # our own copy's __del__ does nothing now
        del value


def test_a_worker_that_dies_freeing_arguments_after_its_reply_is_replaced() -> None:
    # The call had its result; the death is an idle worker's, and the
    # pool's next call runs on its replacement.
    with snakepit.Pool(1) as pool:
        first = pool.worker_pids()
        assert pool.call(arm, DiesWhenFreed()) == "done"
        deadline = time.monotonic() + 30
        while pool.worker_pids() == first or not pool.worker_pids():
            assert time.monotonic() < deadline, "the dead worker was never replaced"
            time.sleep(0.05)
        assert pool.call(len, "abcd") == 4
