"""The monitor thread: a heap of timed actions and the deadlines of running calls.

One thread runs every timed job of a pool: worker spawns (so that the
workers' parent-death signal is tied to a thread that lives as long as the
pool), restarts after backoff, retries, kills after a grace period, and call
timeouts. Call deadlines are not heap entries: the supervisor is asked for
the earliest one each time the thread wakes, so calls that finish in time
leave nothing behind.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Timers"]

#: The monitor wakes at least this often (a bound far below threading.TIMEOUT_MAX).
MAX_SLEEP = 3600.0

Action = Callable[[], Any]
#: Given the time now, the due deadline action if any, else the next deadline.
DeadlineProbe = Callable[[float], tuple[Action | None, float | None]]


class Timers:
    """Runs actions at their time on one thread; shares the supervisor's lock."""

    def __init__(self, lock: threading.RLock, deadlines: DeadlineProbe, name: str) -> None:
        self._heap: list[tuple[float, int, Action]] = []
        self._sequence = itertools.count()
        self._deadlines = deadlines
        self._wakeup = threading.Condition(lock)
        self._done = False
        #: When the thread next wakes by itself: +inf while it waits with no
        #: timeout, -inf while it runs (it looks at everything before it
        #: sleeps again). Nothing due before then needs to wake it.
        self._wakes_at = -math.inf
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __len__(self) -> int:
        """Timed actions waiting (call deadlines are not among them)."""
        return len(self._heap)

    def start(self) -> None:
        """Start the monitor thread."""
        self.thread.start()

    def schedule(self, delay: float, action: Action) -> None:
        """Run ``action`` on the monitor thread in ``delay`` seconds."""
        with self._wakeup:
            self.schedule_locked(delay, action)

    def schedule_locked(self, delay: float, action: Action) -> None:
        """:meth:`schedule`, for a caller that holds the supervisor's lock."""
        when = time.monotonic() + delay
        heapq.heappush(self._heap, (when, next(self._sequence), action))
        if when < self._wakes_at:
            self._wakeup.notify_all()

    def deadline_locked(self, deadline: float) -> None:
        """A call's deadline was set (the caller holds the lock): wake the
        thread only if it would sleep past it. Calls with a timeout, one
        after another, then wake it once per timeout, not once per call."""
        if deadline < self._wakes_at:
            self._wakeup.notify_all()

    def wake_locked(self) -> None:
        """Something changed that the thread must see now (the caller holds the lock)."""
        self._wakeup.notify_all()

    def finish(self) -> None:
        """Let the thread end once nothing is due."""
        with self._wakeup:
            self._done = True
            self._wakeup.notify_all()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end, unless this is the thread."""
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=timeout)

    def _next_locked(self) -> tuple[Action | None, float | None]:
        now = time.monotonic()
        action, wake = self._deadlines(now)
        if action is not None:
            return action, None
        if self._heap:
            if self._heap[0][0] <= now:
                return heapq.heappop(self._heap)[2], None
            wake = self._heap[0][0] if wake is None else min(wake, self._heap[0][0])
        return None, None if wake is None else wake - now

    def _loop(self) -> None:
        # Workers die with this thread (their parent-death signal is tied to
        # it), so nothing may end it but finish().
        while True:
            try:
                with self._wakeup:
                    while True:
                        action, wait = self._next_locked()
                        if action is not None:
                            break
                        if self._done:
                            return
                        if wait is not None:
                            wait = min(max(wait, 0.0), MAX_SLEEP)
                        self._wakes_at = math.inf if wait is None else time.monotonic() + wait
                        self._wakeup.wait(timeout=wait)
                        self._wakes_at = -math.inf
                action()
            except Exception:
                logging.getLogger(__name__).exception("snakepit monitor action failed")
