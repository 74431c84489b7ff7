"""``Pool.map`` with chunks: order, per-item errors, laziness, timeouts, options."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

import snakepit
from snakepit.errors import (
    PythonError,
    ShapeError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)

from . import _tasks

BOUND = 60.0


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, terminate_grace=0.2) as pool:
        yield pool


@pytest.mark.parametrize("chunksize", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("count", [0, 1, 10, 101])
def test_results_come_in_order_for_every_chunking(
    pool: snakepit.Pool, chunksize: int, count: int
) -> None:
    got = list(pool.map(_tasks.add, range(count), range(count, 2 * count), chunksize=chunksize))
    assert got == [a + b for a, b in zip(range(count), range(count, 2 * count), strict=True)]


def test_uneven_iterables_stop_at_the_shortest(pool: snakepit.Pool) -> None:
    assert list(pool.map(_tasks.add, range(10), range(3), chunksize=4)) == [0, 2, 4]


@pytest.mark.parametrize(("items", "chunksize", "calls"), [(2000, 100, 20), (10, 3, 4)])
def test_chunks_travel_as_one_call_each(
    pool: snakepit.Pool, items: int, chunksize: int, calls: int
) -> None:
    before = pool.stats()["completed"]
    assert sum(pool.map(_tasks.add, range(items), range(items), chunksize=chunksize)) == sum(
        2 * i for i in range(items)
    )
    assert pool.stats()["completed"] - before == calls


@pytest.mark.parametrize("bad", [0, 3, 5, 9])
def test_an_item_that_raises_raises_its_own_error_at_its_place(
    pool: snakepit.Pool, bad: int
) -> None:
    results = pool.map(_tasks.square_unless, range(10), [bad] * 10, chunksize=4)
    for value in range(bad):
        assert next(results) == value * value
    with pytest.raises(ValueError, match=f"item {bad} is bad") as info:
        next(results)
    assert isinstance(info.value, PythonError)


def test_item_errors_keep_their_ml_type(pool: snakepit.Pool) -> None:
    results = pool.map(_tasks.matmul_shapes, [2, 3], [4, 5], chunksize=2)
    assert next(results) == (2, 2)
    with pytest.raises(ShapeError):
        next(results)


def test_a_crash_fails_its_chunk_and_the_pool_carries_on(pool: snakepit.Pool) -> None:
    results = pool.map(_tasks.work_or_crash, range(6), [i == 4 for i in range(6)], chunksize=3)
    assert [next(results) for _ in range(3)] == [0, 2, 4]
    with pytest.raises(WorkerCrashedError):
        next(results)
    assert list(pool.map(_tasks.add, range(4), range(4), chunksize=2)) == [0, 2, 4, 6]


@pytest.mark.parametrize("chunksize", [1, 50])
def test_endless_input_is_taken_lazily(pool: snakepit.Pool, chunksize: int) -> None:
    # Calls an earlier test left running must not count into this one's window.
    deadline = time.monotonic() + 30
    while pool.stats()["busy"] or pool.stats()["queue_depth"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before = pool.stats()["completed"]
    results = pool.map(_tasks.add, itertools.count(), itertools.repeat(1), chunksize=chunksize)
    assert list(itertools.islice(results, 25)) == list(range(1, 26))
    results.close()  # cancels what has not started
    assert pool.call(_tasks.add, 1, 1) == 2
    # Only a window of calls ran ahead of what was taken, not the endless rest.
    ran = pool.stats()["completed"] - before - 1
    assert ran <= 25 // chunksize + 1 + pool._map_window


def test_timeout_bounds_the_whole_map(pool: snakepit.Pool) -> None:
    results = pool.map(_tasks.sleep_then_value, [0.0, 5.0], [1, 2], timeout=1.0, chunksize=1)
    assert next(results) == 1
    with pytest.raises(TimeoutError):
        next(results)


def test_view_options_apply_to_every_chunk(pool: snakepit.Pool) -> None:
    view = pool.options(timeout=0.5)
    results = view.map(_tasks.sleep_then_value, [0.0, 5.0, 0.0], [1, 2, 3], chunksize=2)
    with pytest.raises(WorkerTimeoutError):
        next(results)
    assert list(view.map(_tasks.add, range(5), range(5), chunksize=2)) == [0, 2, 4, 6, 8]


def test_module_function_names_work_with_chunks(pool: snakepit.Pool) -> None:
    assert list(pool.map("tests.pool._tasks:add", range(5), range(5), chunksize=2)) == [
        0,
        2,
        4,
        6,
        8,
    ]


@pytest.mark.parametrize("chunksize", [0, -1, 1.5, True, "2"])
def test_bad_chunksize_is_refused(pool: snakepit.Pool, chunksize: object) -> None:
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(_tasks.add, [1], [2], chunksize=chunksize)  # type: ignore[arg-type]


def test_lambdas_and_closures_go_by_value_in_chunks(pool: snakepit.Pool) -> None:
    offset = 7
    assert list(pool.map(lambda x: x + offset, range(5), chunksize=2)) == [7, 8, 9, 10, 11]


def test_a_base_exception_in_an_item_fails_its_chunk_only(pool: snakepit.Pool) -> None:
    results = pool.map(_tasks.exit_on, range(6), [3] * 6, chunksize=3)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(snakepit.SnakepitError):
        next(results)
    assert list(pool.map(_tasks.add, range(3), range(3), chunksize=2)) == [0, 2, 4]


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 10**12])
def test_huge_map_timeouts_mean_none(pool: snakepit.Pool, timeout: float) -> None:
    assert list(pool.map(_tasks.add, range(4), range(4), timeout=timeout, chunksize=2)) == [
        0,
        2,
        4,
        6,
    ]


@pytest.mark.parametrize("timeout", [math.nan, 0, -1.0, "5", True])
def test_invalid_map_timeouts_are_refused(pool: snakepit.Pool, timeout: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        pool.map(_tasks.add, [1], [2], timeout=timeout)  # type: ignore[arg-type]


def test_a_huge_chunksize_is_one_call(pool: snakepit.Pool) -> None:
    before = pool.stats()["completed"]
    assert list(pool.map(_tasks.add, range(50), range(50), chunksize=10**9)) == [
        2 * i for i in range(50)
    ]
    assert pool.stats()["completed"] - before == 1


def test_shutdown_in_the_middle_of_a_map_ends_it_without_hanging() -> None:
    with snakepit.Pool(workers=1) as pool:
        results = pool.map(
            _tasks.sleep_then_value, [0.0] + [0.2] * 40, range(41), timeout=BOUND, chunksize=1
        )
        assert next(results) == 0
        pool.shutdown(wait=False, cancel_futures=True)
        with pytest.raises((CancelledError, WorkerUnavailableError)):
            list(results)
