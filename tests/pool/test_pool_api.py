"""Calls, futures, sessions, initializers and zero-copy arguments (SPEC §2, §1.1)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from concurrent.futures import Executor

import numpy as np
import pytest

import snakepit
from snakepit.errors import DeviceNotAvailableError, PythonError, SerializationError

from . import _tasks


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2) as pool:
        yield pool


def test_pool_is_an_executor_with_live_workers(pool: snakepit.Pool) -> None:
    assert isinstance(pool, Executor)
    pids = pool.worker_pids()
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert pool.call(_tasks.pid) in pids


def test_call_submit_map_acall(pool: snakepit.Pool) -> None:
    assert pool.call(_tasks.add, 2, 3) == 5
    assert pool.submit(_tasks.add, 4, b=5).result(timeout=30) == 9
    assert list(pool.map(_tasks.add, range(5), range(5))) == [0, 2, 4, 6, 8]
    assert asyncio.run(pool.acall(_tasks.add, 1, 1)) == 2


def test_module_function_strings(pool: snakepit.Pool) -> None:
    assert pool.call("operator:mul", 6, 7) == 42
    assert pool.call("os.path:join", "a", "b") == "a/b"
    with pytest.raises(PythonError) as info:
        pool.call("no_such_module_xyz:fn")
    assert isinstance(info.value, ModuleNotFoundError)
    with pytest.raises(PythonError):
        pool.call("operator:no_such_function")
    with pytest.raises(PythonError):
        pool.call("not-a-spec")


def test_lambdas_and_closures(pool: snakepit.Pool) -> None:
    offset = 10
    assert pool.call(lambda x: x + offset, 5) == 15
    assert pool.call(lambda: os.getpid()) != os.getpid()


def test_remote_exceptions_keep_type_and_traceback(pool: snakepit.Pool) -> None:
    with pytest.raises(KeyError) as info:
        pool.call({}.__getitem__, "missing")
    error = info.value
    assert isinstance(error, PythonError)
    with pytest.raises(ZeroDivisionError) as info2:
        pool.call(eval, "1/0")
    assert "ZeroDivisionError" in (info2.value.remote_traceback or "")


def test_shared_array_is_written_in_place(pool: snakepit.Pool) -> None:
    array = snakepit.zeros((256, 256), "float32")
    assert pool.call(_tasks.fill, array, 3.5) is None
    assert np.all(array == 3.5)
    view = array[::4, 1::2]
    pool.call(_tasks.fill, view, -1.0)
    assert np.all(array[::4, 1::2] == -1.0)
    assert np.all(array[1::4] == 3.5)


def test_large_plain_arrays_travel_through_shared_memory(pool: snakepit.Pool) -> None:
    big = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: above the 1 MiB threshold
    assert pool.call(_tasks.total, big) == float(big.sum())
    result = pool.call(_tasks.scaled, big, 2.0)
    assert snakepit.is_shared(result)
    assert np.array_equal(result, big * 2)
    small = np.arange(10)
    echoed = pool.call(_tasks.identity, small)
    assert not snakepit.is_shared(echoed)
    assert np.array_equal(echoed, small)


def test_worker_allocates_result_in_shared_memory(pool: snakepit.Pool) -> None:
    result = pool.call(_tasks.shared_result, 1000)
    assert snakepit.is_shared(result)
    assert result[999] == 999.0
    ref = snakepit.ref_of(result)
    assert ref.region.split("-")[1] != str(os.getpid())  # lives in the worker's arena


def test_echoed_shared_argument_is_the_same_memory(pool: snakepit.Pool) -> None:
    array = snakepit.zeros(1 << 18, "float64")
    echoed = pool.call(_tasks.identity, array)
    echoed[5] = 11.0
    assert array[5] == 11.0


def test_sessions_pin_to_one_worker(pool: snakepit.Pool) -> None:
    first = pool.options(session="s1").call(_tasks.remember, "model", 123)
    for _ in range(5):
        assert pool.options(session="s1").call(_tasks.recall, "model") == 123
        assert pool.options(session="s1").call(_tasks.pid) == first


def test_unknown_device_is_a_typed_error(pool: snakepit.Pool) -> None:
    with pytest.raises(DeviceNotAvailableError):
        pool.options(device="cuda:7").call(_tasks.add, 1, 2)


def test_unpicklable_argument_fails_only_that_call(pool: snakepit.Pool) -> None:
    import threading

    future = pool.submit(_tasks.identity, threading.Lock())
    with pytest.raises(SerializationError) as info:
        future.result(timeout=30)
    assert info.value.direction == "encode"
    assert pool.call(_tasks.add, 1, 1) == 2


def test_initializer_runs_in_every_worker() -> None:
    with snakepit.Pool(workers=2, initializer=_tasks.init_value, initargs=(41,)) as pool:
        assert pool.call(_tasks.recall, "init") == 41
        assert pool.call(_tasks.recall, "init") == 41


def test_cpu_device_hides_gpus() -> None:
    with snakepit.Pool(workers=1, device="cpu") as pool:
        assert pool.call(_tasks.env, "CUDA_VISIBLE_DEVICES") == ""


def test_stats_and_health(pool: snakepit.Pool) -> None:
    stats = pool.stats()
    assert stats["size"] == 2
    assert stats["idle"] + stats["busy"] + stats["starting"] == 2
    assert stats["queue_depth"] == 0
    health = pool.health()
    assert health["status"] in ("healthy", "degraded", "unhealthy", "critical")
    assert set(health["workers"]) == {0, 1}


def test_submit_after_shutdown_is_refused() -> None:
    pool = snakepit.Pool(workers=1)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(_tasks.add, 1, 2)
    assert pool.worker_pids() == []


def test_shutdown_waits_for_queued_calls() -> None:
    pool = snakepit.Pool(workers=1)
    futures = [pool.submit(_tasks.slow_total, np.ones(4), 0.02) for _ in range(10)]
    pool.shutdown(wait=True)
    assert [f.result(timeout=0) for f in futures] == [4.0] * 10
    assert pool.worker_pids() == []


def test_shutdown_can_cancel_queued_calls() -> None:
    pool = snakepit.Pool(workers=1)
    running = pool.submit(_tasks.slow_total, np.ones(4), 0.3)
    queued = [pool.submit(_tasks.add, i, i) for i in range(5)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=0) == 4.0
    assert all(f.cancelled() for f in queued)


def test_graceful_shutdown_lets_workers_exit_normally() -> None:
    with snakepit.Pool(workers=2) as pool:
        result = pool.call(_tasks.shared_result, 1000)  # workers own regions now
        regions = {snakepit.ref_of(result).region}
        del result
    exits = {w["last_exit"] for w in pool.health()["workers"].values()}
    assert exits == {"normal"}
    assert pool.stats()["crashes"] == 0
    assert not any(os.path.exists("/dev/shm" + name) for name in regions)


def test_pool_signature_is_its_initializer_s() -> None:
    # Pool.__new__ (the backend hook) takes *args/**kwargs; tools must see __init__'s.
    import inspect

    parameters = inspect.signature(snakepit.Pool).parameters
    assert next(iter(parameters)) == "workers"
    assert {"spin_seconds", "backend", "oom_fallback", "preload"} <= set(parameters)
