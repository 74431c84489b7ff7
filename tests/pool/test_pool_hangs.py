"""Futures always complete and worker slots always come back.

One regression test per way an adversarial run made a future hang or a slot
go dead; each waits with a bound, never by hanging itself. Neighbouring
inputs of each kind are covered by parametrisation.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import snakepit
from snakepit.errors import (
    InvalidDescriptorError,
    PythonError,
    SerializationError,
    SharedMemoryExhaustedError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool import RetryPolicy
from snakepit.pool._replies import _PRUNE_EVERY
from tests.pool import _tasks
from tests.pool._observe import gone

BOUND = 30.0  # seconds any single wait here may take before the test fails


@pytest.fixture
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, terminate_grace=0.5) as executor:
        yield executor


# --------------------------------------------- 1. BaseException on unpickling


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "ValueError"])
def test_result_that_raises_while_unpickled_fails_typed_and_slot_survives(
    pool: snakepit.Pool, kind: str
) -> None:
    for _ in range(2):
        with pytest.raises(SerializationError, match=kind):
            pool.submit(_tasks.raises_on_load, kind).result(BOUND)
        assert pool.submit(_tasks.add, 1, 2).result(BOUND) == 3


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_argument_that_raises_while_unpickled_fails_typed(pool: snakepit.Pool, kind: str) -> None:
    with pytest.raises(SerializationError, match=kind):
        pool.submit(_tasks.identity, _tasks.RaisesOnLoad(kind)).result(BOUND)
    assert pool.submit(_tasks.add, 2, 2).result(BOUND) == 4


# ------------------------------------------------------ 2. grandchildren


def test_timeout_fires_although_a_grandchild_holds_the_socket(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    marker = tmp_path / "grandchild"
    started = time.monotonic()
    future = pool.options(timeout=1.0).submit(
        _tasks.fork_grandchild_then_sleep, str(marker), 60.0, 600.0
    )
    with pytest.raises(WorkerTimeoutError):
        future.result(BOUND)
    assert time.monotonic() - started < 15.0
    assert gone(int(marker.read_text()))
    assert pool.submit(_tasks.add, 1, 1).result(BOUND) == 2


@pytest.mark.parametrize("action", ["segfault", "timeout", "shutdown"])
def test_subprocess_grandchildren_die_with_their_worker(tmp_path: Path, action: str) -> None:
    marker = tmp_path / "grandchild"
    with snakepit.Pool(workers=1, terminate_grace=0.5) as executor:
        future = executor.options(timeout=1.0 if action == "timeout" else None).submit(
            _tasks.popen_grandchild_then,
            str(marker),
            "segfault" if action == "segfault" else "sleep",
        )
        deadline = time.monotonic() + BOUND
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        grandchild = int(marker.read_text())
        if action == "shutdown":
            executor.shutdown(wait=False, cancel_futures=True)
        expected = {"segfault": WorkerCrashedError, "timeout": WorkerTimeoutError}
        with pytest.raises(expected.get(action, WorkerUnavailableError)):
            future.result(BOUND)
        assert gone(grandchild)


# ------------------------------------------------------ 4. timeouts


@pytest.mark.parametrize("timeout", [math.inf, 1e10, 10**12, 1e300])
def test_huge_timeouts_mean_no_timeout(pool: snakepit.Pool, timeout: float) -> None:
    assert pool.options(timeout=timeout).submit(_tasks.add, 1, 2).result(BOUND) == 3
    assert pool.options(timeout=timeout).submit(_tasks.sleep_then_value, 0.05, 7).result(BOUND) == 7
    assert pool.submit(_tasks.add, 3, 4).result(BOUND) == 7


@pytest.mark.parametrize("timeout", [math.nan, -1.0, 0, "5", True])
def test_invalid_timeouts_are_refused(pool: snakepit.Pool, timeout: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        pool.options(timeout=timeout).submit(_tasks.add, 1, 2)
    assert pool.submit(_tasks.add, 1, 2).result(BOUND) == 3


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -3.0])
def test_pool_default_timeout_is_validated(timeout: float) -> None:
    if math.isinf(timeout):
        with snakepit.Pool(workers=1, timeout=timeout) as executor:
            assert executor.submit(_tasks.add, 1, 2).result(BOUND) == 3
    else:
        with pytest.raises(ValueError, match="timeout"):
            snakepit.Pool(workers=1, timeout=timeout)


# ------------------------------------------------- 5. shutdown and retries


@pytest.mark.parametrize("seconds", [30.0, 0.0])
def test_shutdown_completes_futures_of_running_idempotent_calls(seconds: float) -> None:
    """Running (or about to run) idempotent calls are not retried into a dead pool."""
    executor = snakepit.Pool(workers=1, terminate_grace=0.5)
    future = executor.options(idempotent=True).submit(time.sleep, seconds)
    if seconds:
        time.sleep(0.3)
    executor.shutdown(wait=False, cancel_futures=True)
    if seconds:
        with pytest.raises(WorkerUnavailableError):
            future.result(BOUND)
    else:
        # Cancelled, finished or failed: whichever, it completes.
        concurrent.futures.wait([future], timeout=BOUND)
    assert future.done()
    assert executor.stats()["retries"] == 0


def test_with_block_waits_for_a_retry_in_backoff(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=0.5, jitter=0.0)
    with snakepit.Pool(workers=1, retry=policy) as executor:
        future = executor.options(idempotent=True).submit(_tasks.crash_first_time, str(marker))
        deadline = time.monotonic() + BOUND
        while executor.stats()["retries"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert future.done()
    assert future.result(0) is None


def test_shutdown_without_wait_fails_a_retry_in_backoff(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    policy = RetryPolicy(max_attempts=3, base_delay=5.0, max_delay=5.0, jitter=0.0)
    executor = snakepit.Pool(workers=1, retry=policy)
    future = executor.options(idempotent=True).submit(_tasks.crash_first_time, str(marker))
    deadline = time.monotonic() + BOUND
    while executor.stats()["retries"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(WorkerUnavailableError):
        future.result(BOUND)


# ---------------------------------------------- 6. timeout racing the reply


def test_a_timeout_racing_the_reply_never_mislabels_the_next_call() -> None:
    # Each timeout replaces the worker: never give the slot up, never back off.
    with snakepit.Pool(
        workers=1, terminate_grace=0.2, worker_max_crashes=10_000, restart_backoff=(0.0, 0.0)
    ) as executor:
        for i in range(60):
            delay = 0.05 + (i % 9 - 4) * 0.001
            racing = executor.options(timeout=0.05).submit(time.sleep, delay)
            follow_up = executor.submit(abs, -i)
            with contextlib.suppress(WorkerTimeoutError):
                racing.result(BOUND)
            assert follow_up.result(BOUND) == i


# --------------------------------------------------- 7. bad function spec


@pytest.mark.parametrize("spec", ["nonexistent_mod:fn", "os:no_such_function", "os:sep"])
def test_a_function_that_cannot_be_resolved_fails_the_same_way_every_time(
    pool: snakepit.Pool, spec: str
) -> None:
    errors = []
    for _ in range(3):
        with pytest.raises(PythonError) as caught:
            pool.submit(spec).result(BOUND)
        errors.append(caught.value.python_type)
    assert len(set(errors)) == 1
    assert errors[0] != "SerializationError"
    assert pool.submit(_tasks.add, 1, 2).result(BOUND) == 3


# ------------------------------------------ 10. a header announcing a huge frame


def test_a_header_announcing_a_huge_frame_commits_no_memory_and_times_out() -> None:
    supervisor = psutil.Process()
    with snakepit.Pool(workers=1, terminate_grace=0.5) as executor:
        before = supervisor.memory_info().rss
        started = time.monotonic()
        with pytest.raises(WorkerTimeoutError):
            executor.options(timeout=2.0).submit(_tasks.announce_huge_frame, 2 << 30, 60.0).result(
                BOUND
            )
        assert time.monotonic() - started < 6.0
        assert supervisor.memory_info().rss - before < 256 << 20
        assert executor.submit(_tasks.add, 1, 2).result(BOUND) == 3


def test_signals_do_not_break_frames(pool: snakepit.Pool) -> None:
    """A big frame sent while the supervisor takes signals arrives whole."""
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        payload = os.urandom(8 << 20)
        future = pool.submit(_tasks.identity, payload)
        for _ in range(20):
            os.kill(os.getpid(), signal.SIGUSR1)
        assert future.result(BOUND) == payload
    finally:
        signal.signal(signal.SIGUSR1, previous)


# ---------------------------------------- 8. results that cannot be sent back


def test_a_result_too_big_for_shared_memory_is_a_typed_error_and_the_worker_lives() -> None:
    env = {**os.environ, "SNAKEPIT_SHM_CAP_BYTES": str(32 << 20)}
    with snakepit.Pool(workers=1, env=env) as executor:
        (pid,) = executor.worker_pids()
        for nbytes in (64 << 20, 40 << 20):
            with pytest.raises(SharedMemoryExhaustedError):
                executor.submit(_tasks.big_result, nbytes).result(BOUND)
        assert executor.worker_pids() == [pid]
        assert executor.submit(_tasks.big_result, 8 << 20).result(BOUND).sum() == 8 << 20


@pytest.mark.parametrize("nbytes", [(2 << 30) + (16 << 20), 3 << 30])
def test_a_result_over_the_frame_cap_is_a_typed_error_and_the_worker_lives(
    pool: snakepit.Pool, nbytes: int
) -> None:
    (pid,) = pool.worker_pids()
    started = time.monotonic()
    with pytest.raises(SerializationError, match="frame limit"):
        pool.submit(bytes, nbytes).result(BOUND)
    assert time.monotonic() - started < 10.0
    assert pool.worker_pids() == [pid]
    assert pool.submit(_tasks.add, 1, 2).result(BOUND) == 3


# ------------------------------------------------- 9. absurd descriptor layouts


@pytest.mark.parametrize(
    ("shape", "strides"),
    [
        ((2**40, 0, 2**62 - 1), (1, 1, 1)),
        ((2**61,), (0,)),
        ((17,), (1,)),
        ((8, 4), (0, 1)),
        ((2**31, 2**31, 0), (8, 8, 8)),
    ],
)
def test_absurd_layouts_are_invalid_descriptors(
    shape: tuple[int, ...], strides: tuple[int, ...]
) -> None:
    block = snakepit.zeros((16,), "uint8")
    ref = dataclasses.replace(snakepit.ref_of(block), shape=shape, strides=strides)
    with pytest.raises(InvalidDescriptorError):
        snakepit.from_ref(ref)
    del block


# -------------------------------------------------------------- sessions


def test_sessions_on_an_idle_pool_are_spread_over_the_workers() -> None:
    with snakepit.Pool(workers=3) as executor:
        pids = {
            executor.options(session=f"s{i}").submit(_tasks.pid).result(BOUND) for i in range(3)
        }
        assert len(pids) == 3
        again = {
            executor.options(session=f"s{i}").submit(_tasks.pid).result(BOUND) for i in range(3)
        }
        assert again == pids


# ------------------------------------------- 11, 12. data that dies or stays pinned


def _deleted_shm_mappings() -> int:
    """Mappings of snakepit regions in this process whose file is gone."""
    with open("/proc/self/maps") as maps:
        names = {line.split()[-2] for line in maps if "snakepit-" in line and "(deleted)" in line}
    return len(names)


@pytest.mark.parametrize("death", ["abort", "segfault"])
def test_results_outlive_their_worker_and_can_be_passed_on(death: str) -> None:
    with snakepit.Pool(workers=1) as executor:
        result = executor.submit(_tasks.shared_result, 1 << 18).result(BOUND)
        expected = float(result.sum())
        with pytest.raises(WorkerCrashedError):
            executor.submit(getattr(_tasks, death)).result(BOUND)
        assert executor.submit(_tasks.total, result).result(BOUND) == expected
        assert executor.submit(_tasks.total, result[::2]).result(BOUND) == float(result[::2].sum())
    with snakepit.Pool(workers=1) as other:  # and outlive their pool
        assert other.submit(_tasks.total, result).result(BOUND) == expected


def test_dropped_results_do_not_stay_mapped() -> None:
    # The supervisor drops mappings of regions that workers unlinked every
    # _PRUNE_EVERY replies; each round below is two replies and may leave one
    # such region, so at most _PRUNE_EVERY / 2 stay mapped however many rounds
    # run (without pruning: one per round).
    rounds = 3 * _PRUNE_EVERY
    before = _deleted_shm_mappings()
    with snakepit.Pool(workers=1) as executor:
        for _ in range(rounds):
            result = executor.submit(_tasks.big_result, 40 << 20).result(BOUND)
            assert int(result[-1]) == 1
            del result
            executor.submit(_tasks.trim_arena).result(BOUND)
        assert _deleted_shm_mappings() - before <= _PRUNE_EVERY // 2
