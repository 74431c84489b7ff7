"""Shared-memory reference accounting across the supervisor and its workers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import WorkerCrashedError
from snakepit.zero_copy import _runtime

from . import _tasks


def _wait_for_refcount(ref: snakepit.TensorRef, expected: int) -> None:
    deadline = time.monotonic() + 10
    while zero_copy.block_refcount(ref) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    assert zero_copy.block_refcount(ref) == expected


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2) as pool:
        yield pool


def test_arguments_stay_alive_while_the_call_runs(pool: snakepit.Pool) -> None:
    def ones() -> np.ndarray:
        array = snakepit.empty(1 << 16, "float64")
        array[:] = 1.0
        return array

    future = pool.submit(_tasks.slow_total, ones(), 0.3)  # the caller drops its array
    decoys = [snakepit.zeros(1 << 16, "float64") for _ in range(8)]
    for decoy in decoys:
        decoy[:] = 5.0
    assert future.result(timeout=30) == float(1 << 16)


def test_echoed_supervisor_array_holds_one_reference(pool: snakepit.Pool) -> None:
    array = snakepit.zeros(1 << 16, "float32")
    ref = snakepit.ref_of(array)
    echoed = pool.call(_tasks.identity, array)
    # Ours + the result's. The worker briefly holds one more: the result it
    # sent referred to the argument, so it retained it until the send ended.
    _wait_for_refcount(ref, 2)
    del echoed
    assert zero_copy.block_refcount(ref) == 1


def test_worker_result_reference_is_adopted_exactly_once(pool: snakepit.Pool) -> None:
    result = pool.call(_tasks.shared_result, 1 << 16)
    ref = snakepit.ref_of(result)
    assert ref.region.split("-")[1] != str(os.getpid())
    # The worker drops its own reference just after sending; the one left is ours.
    _wait_for_refcount(ref, 1)
    del result
    assert zero_copy.block_refcount(ref) == 0


def test_results_outlive_the_worker_that_made_them() -> None:
    with snakepit.Pool(workers=1) as pool:
        result = pool.call(_tasks.shared_result, 1 << 16)
        region = snakepit.ref_of(result).region
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        # The dead worker's regions are unlinked; our mapping stays valid.
        assert not os.path.exists("/dev/shm" + region)
        assert result[12345] == 12345.0
        assert pool.call(_tasks.add, 1, 1) == 2


def test_references_held_by_a_dead_worker_are_dropped() -> None:
    array = snakepit.zeros(1 << 16, "float32")
    ref = snakepit.ref_of(array)
    with snakepit.Pool(workers=1) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.hold_then_die, ref)
        assert zero_copy.block_refcount(ref) == 1  # only ours is left


def test_references_released_by_a_live_worker_are_not_dropped_twice() -> None:
    array = snakepit.zeros(1 << 16, "float32")
    ref = snakepit.ref_of(array)
    with snakepit.Pool(workers=1) as pool:
        pool.call(_tasks.hold, ref)
        assert zero_copy.block_refcount(ref) == 2
        pool.call(_tasks.let_go)
        assert zero_copy.block_refcount(ref) == 1
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        assert zero_copy.block_refcount(ref) == 1


def test_ledger_counts_and_clears() -> None:
    memory = np.zeros(_runtime.LEDGER_BYTES, np.uint8)
    ledger = _runtime.LeaseLedger(memory)
    ledger.record("/snakepit-1-0123456789abcdef", 192)
    ledger.record("/snakepit-1-0123456789abcdef", 192)
    ledger.record("/snakepit-1-fedcba9876543210", 256)
    ledger.erase("/snakepit-1-fedcba9876543210", 256)
    assert ledger.held() == [("/snakepit-1-0123456789abcdef", 192, 2)]
    # A second view over the same memory (the supervisor's) sees the same.
    assert _runtime.LeaseLedger(memory).held() == ledger.held()
    ledger.clear()
    assert ledger.held() == []


def test_arguments_kept_by_the_worker_stay_valid(pool: snakepit.Pool) -> None:
    array = snakepit.empty(1 << 14, "float64")
    array[:] = 1.0
    ref = snakepit.ref_of(array)
    pool.options(session="keeper").call(_tasks.keep_argument, array)
    assert zero_copy.block_refcount(ref) == 2  # the worker holds its own now
    ref.release()
    del array
    decoys = [snakepit.empty(1 << 14, "float64") for _ in range(4)]
    for decoy in decoys:
        decoy[:] = 9.0
    # The kept block was not reused under the worker.
    assert pool.options(session="keeper").call(_tasks.kept_total) == float(1 << 13)
    pool.options(session="keeper").call(_tasks.let_go)


def test_arguments_not_kept_take_no_reference(pool: snakepit.Pool) -> None:
    array = snakepit.zeros(1 << 14, "float64")
    ref = snakepit.ref_of(array)
    pool.call(_tasks.total, array)
    assert zero_copy.block_refcount(ref) == 1
