"""Whether unsaturated calls poll is measured: a pool runs short trials of
the other way and switches when the other way is cheaper twice running."""

from __future__ import annotations

import itertools
import os
import socket
import time
from typing import Any

import pytest

import snakepit
from snakepit._wire import protocol
from snakepit.pool import _spin
from snakepit.pool._replies import handle_reply
from snakepit.pool._spin import SpinChoice
from snakepit.worker._main import Worker
from tests.pool import _spin_tasks

SPIN = 0.0002


def _drive(choice: SpinChoice, calls: int, cost: dict[bool, float]) -> list[bool]:
    """Send ``calls`` calls one after another, each costing ``cost[way]``."""
    ways = []
    for _ in range(calls):
        way, counts = choice.choose_locked()
        ways.append(way)
        if counts:
            choice.record_locked(way, cost[way])
    return ways


def _polls(window: float) -> bool:
    """Whether a worker's poll after its call is the pool's (and the caller's
    short pause, which it covers too: see protocol.poll_window)."""
    return SPIN <= window <= SPIN + protocol.MOST_WAIT_POLLED


def test_a_pool_that_does_not_spin_never_tries_it() -> None:
    choice = SpinChoice(False)
    assert _drive(choice, 5000, {True: 1e-6, False: 1.0}) == [False] * 5000


def test_the_cheaper_way_wins_after_two_trials() -> None:
    choice = SpinChoice(True)
    ways = _drive(choice, 1000, {True: 100e-6, False: 50e-6})
    assert choice.spin is False
    # Spinning until the first trial; the two trials are all it took.
    first_trial = ways.index(False)
    assert first_trial >= _spin.FIRST_INTERVAL - 1
    switched = first_trial + 2 * _spin.TRIAL_CALLS + _spin.TRIAL_CALLS + 1
    assert ways[switched:].count(True) <= _spin.TRIAL_CALLS * 4
    assert ways[first_trial : first_trial + _spin.TRIAL_CALLS] == [False] * _spin.TRIAL_CALLS


def test_it_switches_back_when_the_machine_changes() -> None:
    choice = SpinChoice(True)
    _drive(choice, 1000, {True: 100e-6, False: 50e-6})
    assert choice.spin is False
    _drive(choice, 1000, {True: 30e-6, False: 50e-6})
    assert choice.spin is True


def test_a_choice_that_holds_is_tried_ever_more_rarely() -> None:
    choice = SpinChoice(True)
    ways = _drive(choice, 20_000, {True: 50e-6, False: 100e-6})
    assert choice.spin is True
    trial_calls = ways.count(False)
    # Intervals double up to MAX_INTERVAL: a handful of trials, not one
    # per FIRST_INTERVAL calls.
    assert trial_calls <= _spin.TRIAL_CALLS * (20_000 // _spin.MAX_INTERVAL + 6)
    late = ways[-4 * _spin.MAX_INTERVAL :]
    assert 1 <= late.count(False) // _spin.TRIAL_CALLS <= 5


def test_a_difference_within_the_margin_changes_nothing() -> None:
    choice = SpinChoice(True)
    _drive(choice, 5000, {True: 100e-6, False: (1 - _spin.MARGIN / 2) * 100e-6})
    assert choice.spin is True


def test_one_won_trial_is_not_enough() -> None:
    choice = SpinChoice(True)
    # A blip: the first trial's calls were cheap, later ones are not.
    blip = {True: 100e-6, False: 1e-6}
    ways = _drive(choice, _spin.FIRST_INTERVAL - 1 + _spin.TRIAL_CALLS, blip)
    assert ways[-_spin.TRIAL_CALLS :] == [False] * _spin.TRIAL_CALLS
    ways = _drive(choice, 400, {True: 100e-6, False: 200e-6})
    assert choice.spin is True
    assert ways.count(False) <= 3 * _spin.TRIAL_CALLS  # trials only


def test_a_polling_trial_whose_polls_are_lost_ends_at_once() -> None:
    choice = SpinChoice(True)
    _drive(choice, 1000, {True: 100e-6, False: 50e-6})
    assert choice.spin is False
    # Busy machine: every polling call of a trial misses its reply by
    # polling; its cheap-looking figures must not matter, and the trial
    # stops after TRIAL_LOST of them.
    runs = []
    for _ in range(4 * _spin.MAX_INTERVAL):
        way, counts = choice.choose_locked()
        if way and (not runs or not runs[-1]):
            runs.append(0)
        if way:
            runs[-1] += 1
        elif runs and runs[-1]:
            runs.append(0)
        if counts:
            choice.record_locked(way, 1e-6 if way else 50e-6, poll_lost=way)
    assert choice.spin is False
    trials = [run for run in runs if run]
    assert trials
    assert all(run <= _spin.TRIAL_LOST + 1 for run in trials)
    # Lost trials make the next one rarer, as lost medians do.
    assert len(trials) <= 4 * _spin.MAX_INTERVAL // _spin.FIRST_INTERVAL // 2


def test_lost_polls_of_the_choice_itself_end_no_trial() -> None:
    choice = SpinChoice(True)
    for _ in range(3 * _spin.FIRST_INTERVAL):
        way, counts = choice.choose_locked()
        if counts:
            choice.record_locked(way, 100e-6 if way else 200e-6, poll_lost=way)
    assert choice.spin is True
    assert choice._interval > _spin.FIRST_INTERVAL  # a trial ran, by its median


def test_figures_that_are_no_durations_are_ignored() -> None:
    choice = SpinChoice(True)
    _drive(choice, 200, {True: 100e-6, False: 200e-6})
    assert choice.spin is True
    # A worker that reports more function time than the round trip, or NaN:
    # none of it may make the other way look cheaper.
    for bad in (-1e-3, float("nan"), float("-inf"), float("inf")):
        for _ in range(400):
            way, counts = choice.choose_locked()
            if counts:
                choice.record_locked(way, 100e-6 if way else bad)
        assert choice.spin is True
        assert all(0 < value < 1 for value in choice._recent)


def test_the_first_call_of_each_way_does_not_count() -> None:
    choice = SpinChoice(True)
    seen = []
    for _ in range(3 * _spin.FIRST_INTERVAL):
        way, counts = choice.choose_locked()
        seen.append((way, counts))
        if counts:
            choice.record_locked(way, 1e-4 if way else 2e-4)
    assert seen[0] == (True, False)
    for before, (way, counts) in itertools.pairwise(seen):
        assert counts is (way == before[0])


def test_a_pool_that_chose_not_to_spin_tells_its_workers() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2  # as on a two-core machine
        assert _polls(pool.call(_spin_tasks.spin_after_this_call))
        pool._supervisor.spin_choice.spin = False
        assert pool.call(_spin_tasks.spin_after_this_call) == 0.0


def test_a_call_that_passed_the_choice_makes_the_next_one_not_count() -> None:
    choice = SpinChoice(True)
    assert choice.choose_locked() == (True, False)
    assert choice.choose_locked() == (True, True)
    choice.passed_locked()  # a call went without polling, outside the choice
    assert choice.choose_locked() == (True, False)
    assert choice.choose_locked() == (True, True)


def test_workers_report_the_cpu_they_answer_from() -> None:
    with snakepit.Pool(1, spin_seconds=SPIN) as pool:
        (handle,) = pool._supervisor.handles
        assert handle.cpu == -1
        pool.call(_spin_tasks.spin_after_this_call)
        assert handle.cpu in os.sched_getaffinity(0)


def test_a_worker_sharing_its_callers_cpu_does_not_poll() -> None:
    # Caller and worker pinned to one CPU take turns on it: a poll on one
    # side only delays the other, so neither polls, whatever the choice.
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        with snakepit.Pool(1, spin_seconds=SPIN) as pool:
            supervisor = pool._supervisor
            supervisor._cpus = 2  # as on a two-core machine
            # Its first call: the worker's CPU is not known yet.
            assert _polls(pool.call(_spin_tasks.spin_after_this_call))
            assert supervisor.spin_choice.spin is True
            for _ in range(5):
                assert pool.call(_spin_tasks.spin_after_this_call) == 0.0
    finally:
        os.sched_setaffinity(0, allowed)
    # Not pinned, the pool spins again (its worker is on whatever CPU).
    with snakepit.Pool(1, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2
        pool._supervisor.handles[0].cpu = -2  # never the caller's CPU
        assert _polls(pool.call(_spin_tasks.spin_after_this_call))


@pytest.mark.parametrize(
    "body",
    [
        (b"", 0.0),
        (b"", 0.0, "3"),
        (b"", 0.0, 1.0),
        (b"", 0.0, True),
        (b"", 0.0, None),
        (b"", 0.0, 2, 0),
    ],
)
def test_a_reply_without_a_plain_cpu_number_is_a_protocol_error(body: tuple[Any, ...]) -> None:
    with snakepit.Pool(1) as pool:
        supervisor = pool._supervisor
        (handle,) = supervisor.handles
        with pytest.raises(protocol.ProtocolError, match="malformed reply"):
            handle_reply(supervisor, handle, protocol.MSG_RESULT, 1, body)
        assert handle.cpu == -1
        assert pool.call(_spin_tasks.spin_after_this_call) >= 0.0  # the pool is unharmed


@pytest.mark.parametrize(
    ("expected_wait", "window"),
    [
        (None, SPIN),  # nothing known: the pool's poll
        (0.0, SPIN),
        (0.0004, SPIN + 0.0004),  # short: covered
        (protocol.MOST_WAIT_POLLED, SPIN + protocol.MOST_WAIT_POLLED),
        (protocol.MOST_WAIT_POLLED * 1.01, SPIN),  # long: the reader sleeps after its poll
        (-1.0, SPIN),  # no duration
        (float("nan"), SPIN),
    ],
)
def test_a_poll_covers_a_short_expected_wait(expected_wait: float | None, window: float) -> None:
    assert protocol.poll_window(SPIN, expected_wait) == pytest.approx(window)


@pytest.mark.parametrize("expected_wait", [None, 0.0004, 1.0])
def test_a_reader_that_may_not_poll_never_does(expected_wait: float | None) -> None:
    assert protocol.poll_window(0.0, expected_wait) == 0.0


def test_the_caller_polls_for_what_the_function_took_last_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    polls: list[float] = []
    read = protocol.FrameReader.read

    def recording_read(self: protocol.FrameReader) -> protocol.Payload | None:
        polls.append(self.spin_seconds)
        return read(self)

    with snakepit.Pool(1, spin_seconds=SPIN) as pool:
        supervisor = pool._supervisor
        supervisor._cpus = 2  # as on a two-core machine
        pool.call(_spin_tasks.spin_after_this_call, 0.0003)
        (fn_id,) = supervisor.last_runs
        ran = supervisor.last_runs[fn_id]
        assert 0.0003 <= ran < 0.1
        supervisor.handles[0].cpu = -2  # never the caller's CPU: the call may poll
        monkeypatch.setattr(protocol.FrameReader, "read", recording_read)
        pool.call(_spin_tasks.spin_after_this_call, 0.0003)
        monkeypatch.undo()
    assert polls, "the caller read its reply itself"
    assert polls[0] == pytest.approx(protocol.poll_window(SPIN, ran))


def test_the_last_runs_kept_start_over_past_their_bound() -> None:
    with snakepit.Pool(1) as pool:
        supervisor = pool._supervisor
        supervisor.last_runs.update((-i, 0.0) for i in range(1, _spin.MOST_RUNS_KEPT + 1))
        pool.call(_spin_tasks.spin_after_this_call)
        assert len(supervisor.last_runs) == 1


def test_a_worker_polls_for_as_long_as_its_caller_paused_last_time() -> None:
    left, right = socket.socketpair()
    try:
        worker = Worker(protocol.FrameReader(left, spin_seconds=SPIN), os.getpid())
        assert worker.poll_after(True) == SPIN  # no pause seen yet
        worker.last_gap = 0.0006
        assert worker.poll_after(True) == pytest.approx(SPIN + 0.0006)
        worker.last_gap = 0.05  # a caller that pauses long: the pool's poll, then sleep
        assert worker.poll_after(True) == SPIN
        assert worker.poll_after(False) == 0.0  # the supervisor said no
    finally:
        left.close()
        right.close()


def test_a_worker_measures_its_callers_pause() -> None:
    with snakepit.Pool(1, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2  # as on a two-core machine
        pool.call(_spin_tasks.spin_after_this_call)
        time.sleep(0.05)  # a pause longer than any poll covers
        pool._supervisor.handles[0].cpu = -2  # never the caller's CPU: the call may poll
        assert pool.call(_spin_tasks.spin_after_this_call) == SPIN
        windows = []
        for _ in range(10):
            pool._supervisor.handles[0].cpu = -2
            windows.append(pool.call(_spin_tasks.spin_after_this_call))
    # Back to back: each poll covers the caller's short pause (at most 1 ms
    # more; a pause stretched by a busy machine gets the pool's poll alone).
    assert all(_polls(window) for window in windows)
    assert any(window > SPIN for window in windows)
