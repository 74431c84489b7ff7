"""The monitor thread wakes for what is due, not for every deadline set."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import snakepit
from snakepit.pool._timers import Action, Timers
from tests.pool import _tasks


class _Deadlines:
    """The supervisor's side of the monitor: one settable deadline, and a
    count of how often the thread looked."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.looks = 0
        self.fired = threading.Event()

    def __call__(self, now: float) -> tuple[Action | None, float | None]:
        self.looks += 1
        if self.deadline is not None and self.deadline <= now:
            self.deadline = None
            return self.fired.set, None
        return None, self.deadline


@pytest.fixture
def monitor() -> Any:
    lock = threading.RLock()
    deadlines = _Deadlines()
    timers = Timers(lock, deadlines, "test-monitor")
    timers.start()
    time.sleep(0.05)  # asleep, with nothing due
    yield lock, deadlines, timers
    timers.finish()
    timers.join(5.0)


def _settle(deadlines: _Deadlines) -> int:
    """The thread's looks once it has gone back to sleep."""
    looks = -1
    while looks != deadlines.looks:
        looks = deadlines.looks
        time.sleep(0.02)
    return looks


def test_later_deadlines_do_not_wake_the_monitor(monitor: Any) -> None:
    lock, deadlines, timers = monitor
    start = _settle(deadlines)
    with lock:
        deadlines.deadline = time.monotonic() + 60.0
        timers.deadline_locked(deadlines.deadline)  # sleeping with no timeout: wakes
    first = _settle(deadlines)
    assert first > start
    for step in range(200):  # calls one after another, each a little later
        with lock:
            deadlines.deadline = time.monotonic() + 60.0 + step
            timers.deadline_locked(deadlines.deadline)
    assert _settle(deadlines) == first


def test_an_earlier_deadline_wakes_it_and_fires_on_time(monitor: Any) -> None:
    lock, deadlines, timers = monitor
    with lock:
        deadlines.deadline = time.monotonic() + 60.0
        timers.deadline_locked(deadlines.deadline)
    _settle(deadlines)
    with lock:
        deadlines.deadline = time.monotonic() + 0.05
        timers.deadline_locked(deadlines.deadline)
    assert deadlines.fired.wait(2.0)


def test_a_scheduled_action_runs_on_time_while_a_later_one_waits(monitor: Any) -> None:
    _, _, timers = monitor
    ran: list[str] = []
    late, early = threading.Event(), threading.Event()
    timers.schedule(30.0, lambda: (ran.append("late"), late.set()))
    timers.schedule(0.05, lambda: (ran.append("early"), early.set()))
    assert early.wait(2.0)
    assert ran == ["early"]


def test_calls_with_a_timeout_still_time_out() -> None:
    with snakepit.Pool(workers=1, timeout=0.5) as pool:
        for _ in range(20):
            assert pool.call(_tasks.add, 1, 1) == 2  # each sets a deadline
        with pytest.raises(snakepit.errors.WorkerTimeoutError):
            pool.call(_tasks.spin_forever)
        assert pool.call(_tasks.add, 2, 2) == 4
