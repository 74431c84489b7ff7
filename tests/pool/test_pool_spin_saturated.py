"""Callers and workers poll for their next frame only while the pool is not
saturated: every call in flight needs a core for its worker and one for its
caller, or polling keeps the callers that would send work off the CPU."""

from __future__ import annotations

import types
from concurrent.futures import Future
from typing import Any

import pytest

import snakepit
from snakepit.pool._supervisor import Supervisor
from tests.pool import _spin_tasks

SPIN = 0.0002


def _pays(states: list[str], cpus: int) -> bool:
    double = types.SimpleNamespace(
        handles=[types.SimpleNamespace(state=state) for state in states], _cpus=cpus
    )
    return Supervisor._spin_pays_locked(double)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("states", "cpus", "pays"),
    [
        (["busy", "idle"], 2, True),
        (["busy", "busy"], 2, False),
        (["busy", "busy"], 4, True),
        (["busy", "busy", "busy"], 4, False),
        (["idle", "starting"], 1, True),
        (["busy"], 1, False),
        (["busy"] * 8, 16, True),
        (["busy"] * 9, 16, False),
    ],
)
def test_polling_pays_while_each_call_in_flight_has_two_cores(
    states: list[str], cpus: int, pays: bool
) -> None:
    assert _pays(states, cpus) is pays


def test_a_worker_polls_after_a_call_of_an_unsaturated_pool() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2  # as on a two-core machine
        assert pool.call(_spin_tasks.spin_after_this_call) == SPIN


def test_a_saturated_pool_tells_its_workers_not_to_poll() -> None:
    with snakepit.Pool(2, spin_seconds=SPIN) as pool:
        pool._supervisor._cpus = 2
        # Two calls at once: both workers busy, no core left for the callers.
        futures: list[Future[Any]] = [
            pool.submit(_spin_tasks.spin_after_this_call, 0.3) for _ in range(2)
        ]
        spins = sorted(future.result(timeout=30) for future in futures)
        # The first went out alone (polling paid); the second saturated the pool.
        assert spins == [0.0, SPIN]
        # Alone again: the next call's worker polls after it.
        assert pool.call(_spin_tasks.spin_after_this_call) == SPIN
