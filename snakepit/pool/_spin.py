"""Whether a pool's calls poll for their next frame or sleep: measured, not guessed.

Polling (``spin_seconds``) saves the wake-up of a sleeping process, which on
an idle machine costs more than the call itself (a no-op round trip
measured about 70 µs polling, 150-200 µs sleeping on a 2-core VM). With
another busy process on the box the same wake-up is a cheap preemption of
that process, and the polling now takes a core someone wants: 85 µs
sleeping against 93-150 µs polling. Nothing the pool can read cheaply says
which machine it is on at the moment, so :class:`SpinChoice` measures.

Each call's overhead is the time from its submission to its reply, less
its time in the queue and the time the worker spent in the function. The pool runs its calls one way
(the *choice*) and now and then a short trial of the other: a few
consecutive calls, the first of which is not counted (its worker still
polled, or not, after the call before). When the trial's median overhead
beats the choice's recent median by a margin twice running (a second trial
follows the first at once: one trial is too easily won by a blip), the pool
switches. A trial that confirms the choice makes the next one twice as
rare, up to :data:`MAX_INTERVAL` calls; a switch starts over at
:data:`FIRST_INTERVAL`. So the choice follows the machine within a few
hundred calls, and the trials cost about 1% of a no-op call's time once the
choice is settled. Intervals count calls, not seconds: the choice only
matters while calls come back to back.

A trial of polling ends as soon as two of its calls did not catch their
reply by polling (their caller's core was taken, or its poll backed off):
on a machine without a core to spare it only costs (it confirms the
choice, as a trial lost by its median does).

Whatever the choice, a call whose worker answered its last call from the
CPU the call is dispatched on does not poll, nor does its worker after it
(the supervisor checks, call by call). Sharing a CPU, the two take turns:
a poll on one side only delays the other (a no-op measured 75-77 µs with
polling, 68-73 µs without), and a busy machine mostly looks like this,
the busy process on one core and caller and worker on the other. On
different CPUs polling catches every reply (36 µs against 100-110 µs).
The scheduler moves the two apart or together now and then; the check
follows it.

The worker side backs off on its own as well (``FrameReader._spin_recv``):
this decides whether a call may poll at all; the reader decides wait by
wait whether polling catches anything.

A caller in ``Pool.call`` waits for the function's run as well as for the
round trip, so its poll covers what the function took the last time it ran
(``protocol.poll_window``), and a worker's covers the time its caller took
to send the next call the last time (``worker/_main.py``).
"""

from __future__ import annotations

import math
import statistics
from collections import deque

__all__ = ["MOST_RUNS_KEPT", "SpinChoice"]

#: Calls in one trial of the other way; the first is not counted.
TRIAL_CALLS = 8
#: Calls between trials: the first interval, and the longest one.
FIRST_INTERVAL = 64
MAX_INTERVAL = 1024
#: The other way must beat the choice by this fraction to win a trial.
MARGIN = 0.05
#: A trial of polling whose counted calls lose this many polls is lost.
TRIAL_LOST = 2
#: Functions whose last run time is kept (then it starts over).
MOST_RUNS_KEPT = 1024


class SpinChoice:
    """Chooses, call by call, whether a call and its worker may poll (spin).

    Used under the supervisor's lock: :meth:`choose_locked` at dispatch,
    :meth:`record_locked` when the reply came.
    """

    __slots__ = (
        "_due_in",
        "_interval",
        "_last",
        "_leading",
        "_recent",
        "_trial",
        "_trial_left",
        "_trial_lost",
        "spin",
    )

    def __init__(self, enabled: bool) -> None:
        #: The current choice (a pool with ``spin_seconds=0`` never spins).
        self.spin = enabled
        self._recent: deque[float] = deque(maxlen=TRIAL_CALLS)  # overheads of the choice
        self._trial: list[float] = []  # overheads of the other way, in its trial
        self._trial_left = 0  # calls of the trial still to send
        self._trial_lost = 0  # counted calls of a polling trial that lost their poll
        self._interval = FIRST_INTERVAL
        # None: spinning is off for good; no trial ever.
        self._due_in: int | None = FIRST_INTERVAL if enabled else None
        self._last: bool | None = None  # the way of the last call sent
        self._leading = False  # the other way won the last trial

    def choose_locked(self) -> tuple[bool, bool]:
        """The way the next call goes (True: it polls), and whether its
        overhead counts (the call before it went the same way)."""
        if self._due_in is None:
            return False, False
        if self._trial_left:
            self._trial_left -= 1
            way = not self.spin
        else:
            self._due_in -= 1
            if self._due_in <= 0 and len(self._recent) >= TRIAL_CALLS // 2:
                self._trial.clear()
                self._trial_lost = 0
                self._trial_left = TRIAL_CALLS - 1
                way = not self.spin
            else:
                way = self.spin
        counts = way == self._last
        self._last = way
        return way, counts

    def passed_locked(self) -> None:
        """A call went without polling whatever the choice (its worker
        answered the last call from the dispatching thread's CPU): the
        next call's overhead says nothing about the way it goes."""
        self._last = None

    def record_locked(self, way: bool, overhead: float, poll_lost: bool = False) -> None:
        """A counted call that went ``way`` had this overhead (seconds);
        ``poll_lost``: its caller polled for the reply and did not catch it so.

        A figure that is not a real duration (a worker's function time is
        its word: NaN, infinite, more than the round trip) is ignored.
        """
        if self._due_in is None or not 0.0 <= overhead < math.inf:
            return
        if way == self.spin:
            self._recent.append(overhead)
            return
        self._trial.append(overhead)
        if way and poll_lost:
            self._trial_lost += 1
            if self._trial_lost >= TRIAL_LOST:
                self._trial_left = 0
                self._trial.clear()
                self._confirmed()
                return
        if self._trial_left or len(self._trial) < TRIAL_CALLS // 2:
            return  # the trial is not over (its first call does not count)
        trial = statistics.median(self._trial)
        self._trial.clear()
        if trial >= (1.0 - MARGIN) * statistics.median(self._recent):
            self._confirmed()
        elif not self._leading:
            # Once more, after the choice's own samples are fresh again.
            self._leading = True
            self._due_in = TRIAL_CALLS + 1
        else:
            self._leading = False
            self.spin = way
            self._recent.clear()
            self._recent.append(trial)
            self._interval = self._due_in = FIRST_INTERVAL

    def _confirmed(self) -> None:
        """The trial lost: the choice holds, and the next trial is twice as rare."""
        self._leading = False
        self._interval = min(2 * self._interval, MAX_INTERVAL)
        self._due_in = self._interval
