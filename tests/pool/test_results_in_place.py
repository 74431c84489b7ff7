"""A worker's fresh large results travel from where numpy allocated them
(its arena, lent to numpy's allocator), with no copy; kept ones are copied."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from tests.pool import _in_place_tasks as tasks

NBYTES = 2 << 20


def _expected(nbytes: int = NBYTES) -> np.ndarray[Any, Any]:
    return np.arange(nbytes // 8, dtype=np.float64) * 2


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, timeout=60) as executor:
        # The worker's arena exists once it shared something: from then on
        # numpy allocates large buffers in it.
        executor.call(tasks.fresh, NBYTES)
        yield executor


def _in_place(pool: snakepit.Pool, fn: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    before = pool.call(tasks.probe)["in_place"]
    result = fn(*args)
    return result, pool.call(tasks.probe)["in_place"] - before


@pytest.mark.parametrize("extra", [0, 8, 4096, 3 << 20])
def test_a_fresh_result_from_the_threshold_up_travels_in_place(
    pool: snakepit.Pool, extra: int
) -> None:
    nbytes = zero_copy.threshold_bytes() + extra
    result, moved = _in_place(pool, pool.call, tasks.fresh, nbytes)
    np.testing.assert_array_equal(result, _expected(nbytes))
    assert moved == 1
    assert result.flags.writeable


def test_results_the_caller_holds_each_keep_their_own_memory(pool: snakepit.Pool) -> None:
    results, moved = _in_place(
        pool, lambda: [pool.call(tasks.scaled, NBYTES, float(k)) for k in range(1, 6)]
    )
    assert moved == 5
    for k, result in enumerate(results, start=1):
        np.testing.assert_array_equal(result, np.arange(NBYTES // 8, dtype=np.float64) * k)


def test_a_result_below_the_threshold_is_not_lent(pool: snakepit.Pool) -> None:
    nbytes = zero_copy.threshold_bytes() - 8
    result, moved = _in_place(pool, pool.call, tasks.fresh, nbytes)
    np.testing.assert_array_equal(result, _expected(nbytes))
    assert moved == 0


@pytest.mark.parametrize("fn", [tasks.containers, tasks.as_list, tasks.as_dict])
def test_fresh_arrays_in_a_tuple_list_or_dict_travel_in_place(
    pool: snakepit.Pool, fn: Callable[[int], Any]
) -> None:
    result, moved = _in_place(pool, pool.call, fn, NBYTES)
    items = list(result.values()) if isinstance(result, dict) else list(result)
    large = [item for item in items if item.nbytes >= NBYTES]
    assert len(large) == 2
    for item in large:
        np.testing.assert_array_equal(item, _expected())
    assert moved == 2


def test_arrays_deeper_down_are_copied(pool: snakepit.Pool) -> None:
    result, moved = _in_place(pool, pool.call, tasks.nested, NBYTES)
    np.testing.assert_array_equal(result[0][0], _expected())
    np.testing.assert_array_equal(result[1]["x"][0], _expected())
    assert moved == 0


@pytest.mark.parametrize("fn", [tasks.kept, tasks.kept_by_a_view, tasks.kept_in_a_tuple])
def test_a_result_the_worker_keeps_is_copied_and_later_writes_do_not_reach_it(
    pool: snakepit.Pool, fn: Callable[[int], Any]
) -> None:
    result, moved = _in_place(pool, pool.call, fn, NBYTES)
    assert moved == 0
    pool.call(tasks.overwrite_kept)
    for array in result if isinstance(result, tuple) else (result,):
        np.testing.assert_array_equal(array, _expected())


@pytest.mark.parametrize(
    ("fn", "moves"),
    [(tasks.fresh_fortran, 0), (tasks.fresh_readonly, 1), (tasks.fresh_resized, 1)],
)
def test_layouts_flags_and_growth(
    pool: snakepit.Pool, fn: Callable[[int], Any], moves: int
) -> None:
    result, moved = _in_place(pool, pool.call, fn, NBYTES)
    expected = _expected()
    if fn is tasks.fresh_fortran:
        expected = expected.reshape(-1, 2)
    np.testing.assert_array_equal(result, expected)
    assert moved == moves


def test_blocks_do_not_accumulate_over_many_calls(pool: snakepit.Pool) -> None:
    def settled() -> dict[str, Any]:
        gc.collect()
        time.sleep(0.05)
        pool.call(tasks.fresh, 8)  # a call lets the worker reclaim released blocks
        return pool.call(tasks.probe)

    before = settled()
    for _ in range(30):
        result = pool.call(tasks.fresh, NBYTES)
        assert result[-1] == _expected()[-1]
        del result
    after = settled()
    assert after["in_place"] - before["in_place"] == 30
    assert after["live_blocks"] <= before["live_blocks"] + 2
    assert after["lent"] <= before["lent"] + 1


def test_a_forked_child_leaves_the_parents_lent_buffers_alone(pool: snakepit.Pool) -> None:
    assert pool.call(tasks.fork_and_free, NBYTES) == 0
    result, moved = _in_place(pool, pool.call, tasks.fresh, NBYTES)
    np.testing.assert_array_equal(result, _expected())
    assert moved == 1


def test_a_result_outlives_the_worker_that_lent_it() -> None:
    with snakepit.Pool(workers=1, timeout=60) as crashy:
        crashy.call(tasks.fresh, NBYTES)
        results = [crashy.call(tasks.fresh, NBYTES) for _ in range(3)]
        first = crashy.call(tasks.probe)
        assert first["in_place"] >= 3
        with pytest.raises(snakepit.errors.WorkerCrashedError):
            crashy.call(tasks.segfault)
        for result in results:
            np.testing.assert_array_equal(result, _expected())
        after = crashy.call(tasks.probe)
        assert after["pid"] != first["pid"]
        np.testing.assert_array_equal(crashy.call(tasks.fresh, NBYTES), _expected())


def test_turned_off_results_are_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAKEPIT_RESULTS_IN_PLACE", "0")
    with snakepit.Pool(workers=1, timeout=60) as plain:
        for _ in range(3):
            np.testing.assert_array_equal(plain.call(tasks.fresh, NBYTES), _expected())
        probe = plain.call(tasks.probe)
    assert probe["in_place"] == 0
    assert probe["lent"] == 0


@pytest.mark.parametrize(
    "limit", [{"memory_limit_per_worker": "4GiB"}, {"max_memory_per_worker": "4GiB"}]
)
def test_a_worker_under_a_memory_limit_keeps_its_arrays_its_own(limit: dict[str, str]) -> None:
    # The limits count the worker's own memory, which shared memory is not.
    with snakepit.Pool(workers=1, timeout=60, **limit) as limited:
        for _ in range(3):
            np.testing.assert_array_equal(limited.call(tasks.fresh, NBYTES), _expected())
        probe = limited.call(tasks.probe)
    assert probe["in_place"] == 0
    assert probe["lent"] == 0


def _segments_of(pids: set[int]) -> list[str]:
    return [
        name
        for name in os.listdir("/dev/shm")
        if name.startswith("snakepit-") and any(f"-{pid}-" in name for pid in pids)
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_outlive_their_pool_and_no_segment_outlives_them(workers: int) -> None:
    with snakepit.Pool(workers=workers, timeout=60) as short:
        pids = set(short.worker_pids())
        for _ in range(workers):
            short.call(tasks.fresh, NBYTES)
        results = [short.call(tasks.scaled, NBYTES, float(k)) for k in range(1, 7)]
        assert sum(short.call(tasks.probe)["in_place"] for _ in range(workers)) >= 1
    # The workers are gone; what they lent is still mapped here.
    for k, result in enumerate(results, start=1):
        np.testing.assert_array_equal(result, np.arange(NBYTES // 8, dtype=np.float64) * k)
        result[0] = -1.0  # and writable
    del results, result
    gc.collect()
    zero_copy.collect_garbage()
    assert _segments_of(pids) == []
