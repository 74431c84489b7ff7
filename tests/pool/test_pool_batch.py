"""Batch work with the defaults: every item gets its own outcome.

A loop over items, some of which crash their worker, must give a result for
every good item and one crash error per bad one: no refusals after a run of
bad items (the circuit breaker is off unless asked for), and no slot that
stops restarting because of them.
"""

from __future__ import annotations

import pytest

import snakepit
from snakepit.errors import CircuitOpenError, WorkerCrashedError

from . import _tasks


@pytest.mark.parametrize(
    ("workers", "bad"),
    [
        (2, range(5, 10)),  # the batch: 5 crashes
        (2, range(5, 11)),  # one more than the breaker's old threshold
        (1, range(40, 47)),  # one worker crashing more often than worker_max_crashes
        (2, range(0, 100, 9)),  # crashes spread over the run
    ],
)
def test_a_batch_with_crashing_items_gives_every_item_its_outcome(workers: int, bad: range) -> None:
    results, crashes, refused = [], [], []
    with snakepit.Pool(workers) as pool:
        for item in range(100):
            try:
                results.append(pool.call(_tasks.work_or_crash, item, item in bad))
            except WorkerCrashedError as error:
                crashes.append((item, error))
            except CircuitOpenError as error:
                refused.append((item, error))
    assert refused == []
    assert [item for item, _ in crashes] == list(bad)
    assert results == [2 * item for item in range(100) if item not in bad]


def test_circuit_breaker_true_turns_breakers_on() -> None:
    with snakepit.Pool(1, circuit_breaker=True, worker_max_crashes=100) as pool:
        for _ in range(5):
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.work_or_crash, 0, True)
        with pytest.raises(CircuitOpenError) as info:
            pool.call(_tasks.work_or_crash, 0, False)
    assert "circuit_breaker=False" in str(info.value)


def test_circuit_breaker_rejects_other_values() -> None:
    with pytest.raises(TypeError, match="circuit_breaker"):
        snakepit.Pool(1, circuit_breaker="on")  # type: ignore[arg-type]
