"""Callers and workers poll for their next frame only while the pool is not
saturated: every call in flight needs a core for its worker and one for its
caller, or polling keeps the callers that would send work off the CPU."""

from __future__ import annotations

import types
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

import snakepit
from snakepit._wire import protocol
from snakepit.pool._supervisor import Supervisor
from tests.pool import _spin_tasks

SPIN = 0.0002


def _pays(calls: list[str], cpus: int) -> bool:
    """``calls``: per worker, ``idle``, ``waited`` (a ``Pool.call`` runs there)
    or ``submitted`` (a ``submit``)."""
    handles = [
        types.SimpleNamespace(
            state="idle" if call == "idle" else "busy",
            current=None
            if call == "idle"
            else types.SimpleNamespace(caller_waits=call == "waited"),
        )
        for call in calls
    ]
    double = types.SimpleNamespace(handles=handles, _cpus=cpus)
    return Supervisor._spin_pays_locked(double)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("calls", "cpus", "pays"),
    [
        (["waited", "idle"], 2, True),
        (["waited", "waited"], 2, False),
        (["submitted", "submitted"], 2, True),
        (["waited", "submitted"], 2, False),
        (["waited", "waited"], 4, True),
        (["submitted"] * 3, 2, False),
        (["idle", "idle"], 1, True),
        (["waited"], 1, False),
        (["waited"] * 8, 16, True),
        (["waited"] * 9, 16, False),
        (["waited"] * 4, 8, True),  # a small pool on a large machine always fits
        (["idle"] * 64, 2, True),
        (["waited"] * 3 + ["idle"] * 61, 4, False),  # found before the idle ones
        (["idle"] * 61 + ["waited"] * 3, 4, False),
        (["idle"] * 60 + ["submitted"] * 4, 4, True),
    ],
)
def test_polling_pays_while_each_call_in_flight_has_its_cores(
    calls: list[str], cpus: int, pays: bool
) -> None:
    assert _pays(calls, cpus) is pays


def _polls(window: float) -> bool:
    """Whether a worker polls after its call: the pool's ``spin_seconds``,
    and its caller's short pause too (see ``protocol.poll_window``)."""
    return SPIN <= window <= SPIN + protocol.MOST_WAIT_POLLED


def test_a_worker_polls_after_a_call_of_an_unsaturated_pool() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2  # as on a two-core machine
        assert _polls(pool.call(_spin_tasks.spin_after_this_call))


def test_a_saturated_pool_tells_its_workers_not_to_poll() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2
        # Two threads in call() at once: both workers busy, and no core left
        # for the callers.
        with ThreadPoolExecutor(2) as threads:
            waited = [
                threads.submit(pool.call, _spin_tasks.spin_after_this_call, 0.3) for _ in range(2)
            ]
            spins = sorted(future.result(timeout=30) for future in waited)
        # The first went out alone (polling paid); the second saturated the pool.
        assert spins[0] == 0.0
        assert _polls(spins[1])
        # Alone again: the next call's worker polls after it (wherever the
        # scheduler put it: a worker on the caller's CPU never polls).
        for handle in pool._supervisor.handles:
            handle.cpu = -2
        assert _polls(pool.call(_spin_tasks.spin_after_this_call))


def test_submitted_calls_leave_their_cores_to_the_workers() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2
        futures: list[Future[Any]] = [
            pool.submit(_spin_tasks.spin_after_this_call, 0.3) for _ in range(2)
        ]
        assert all(_polls(future.result(timeout=30)) for future in futures)
