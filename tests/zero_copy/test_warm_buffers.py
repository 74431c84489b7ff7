"""numpy's allocator in workers: large arrays from warm buffers (the C core's
cache), reused call after call, everything else from malloc as before."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import _core, zero_copy

from . import _warm_tasks

MIB = 1 << 20


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a fresh thread: numpy's allocator is per context, so the
    test session's own thread keeps numpy's default one."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # handed back to the test
            box.append(("err", exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    kind, value = box[0]
    if kind == "err":
        raise value
    return value


def test_large_arrays_reuse_warm_buffers() -> None:
    def body() -> None:
        _core.install_warm_allocator(MIB, 64 * MIB)
        assert _core.warm_allocator_active()
        assert not _core.install_warm_allocator(MIB, 64 * MIB)  # already set here
        before = _core.warm_stats()
        first = np.ones(2 * MIB // 8)
        address = first.ctypes.data
        assert address % 4096 == 0  # a mapping of its own
        after_first = _core.warm_stats()
        assert after_first["live_buffers"] == before["live_buffers"] + 1
        del first
        second = np.empty(2 * MIB // 8 - 100)  # similar size: the same warm buffer
        assert second.ctypes.data == address
        assert _core.warm_stats()["reuses"] == before["reuses"] + 1
        # Small arrays and np.zeros (fresh zero pages) are not the cache's.
        small = np.ones(1000)
        zeros = np.zeros(4 * MIB // 8)
        assert zeros.ctypes.data != address
        assert not zeros.any()
        assert _core.warm_stats()["live_buffers"] == after_first["live_buffers"]
        # Growing a cached array in place keeps its values (realloc).
        second[:] = 7.0
        second.resize(8 * MIB // 8, refcheck=False)
        assert (second[: 2 * MIB // 8 - 100] == 7.0).all()
        del second, small, zeros

    _in_thread(body)
    assert not _core.warm_allocator_active()  # this thread is untouched


def test_arrays_from_before_the_switch_are_freed_by_their_own_allocator() -> None:
    def body() -> None:
        old = np.ones(3 * MIB // 8)  # numpy's default allocator
        _core.install_warm_allocator(MIB, 64 * MIB)
        live = _core.warm_stats()["live_buffers"]
        del old  # goes back to malloc, not to the cache
        assert _core.warm_stats()["live_buffers"] == live
        kept = np.ones(3 * MIB // 8)
        return kept

    kept = _in_thread(body)
    # Freed here, where numpy's default allocator is current: the array keeps
    # the allocator that made it.
    live = _core.warm_stats()["live_buffers"]
    assert kept.sum() == 3 * MIB // 8
    del kept
    assert _core.warm_stats()["live_buffers"] == live - 1


def test_install_refuses_a_zero_minimum() -> None:
    with pytest.raises(ValueError, match="min_bytes"):
        _core.install_warm_allocator(0, MIB)


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    # Results copied into shared memory, so that their temporaries are the
    # warm buffers' (sent in place, they are the arena's: test_results_in_place).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SNAKEPIT_RESULTS_IN_PLACE", "0")
        with snakepit.Pool(workers=1) as pool:
            yield pool


def test_workers_compute_results_in_warm_buffers(pool: snakepit.Pool) -> None:
    source = np.arange(4 * MIB // 4, dtype=np.float32)
    results = [pool.call(_warm_tasks.times, source, float(k)) for k in range(1, 5)]
    # Every result is its own copy: reusing the worker's buffer does not alias them.
    for k, result in enumerate(results, start=1):
        assert zero_copy.is_shared(result)
        np.testing.assert_array_equal(result, source * k)
    active, stats = pool.call(_warm_tasks.warm_state)
    assert active
    assert stats["reuses"] >= 3


def test_workers_can_keep_numpy_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAKEPIT_WARM_CACHE_BYTES", "0")
    with snakepit.Pool(workers=1) as pool:
        active, _ = pool.call(_warm_tasks.warm_state)
        assert not active
        source = np.ones(2 * MIB // 4, dtype=np.float32)
        np.testing.assert_array_equal(pool.call(_warm_tasks.times, source, 2.0), source * 2)
