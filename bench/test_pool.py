"""snakepit.Pool against concurrent.futures.ProcessPoolExecutor, 2 workers each.

Both executors are created once per module and warmed up; every case runs
against both in the same session, so ``bench/report.py`` can divide medians:

- ``noop``: an empty call's round trip. Target: snakepit <= 0.5x the peer.
- ``shared-arg-*``: the worker reads one element of an array. snakepit gets an
  array already in shared memory (``snakepit.zeros``), the peer the plain numpy
  array, pickled. Target at 100 MiB: snakepit >= 100x faster; and snakepit's
  1 GiB call within 2x of its 1 KiB call (the peer skips 1 GiB: too slow).
- ``fresh-arg-100MiB``: a plain (not shared) 100 MiB array; the worker returns
  its sum. Target: snakepit >= 5x faster.
- ``echo-100MiB``: the worker returns a copy of a plain 100 MiB array.
  Target: snakepit >= 5x faster.
- ``crash-recovery``: from submitting a call that segfaults its worker to the
  next successful call completing. Target: median < 100 ms. The peer cannot
  recover (see ``test_peer_pool_is_broken_after_a_segfault``): its number is
  shutting the broken executor down and starting a new one.

The peer uses the ``spawn`` start method: forking this process, which runs
snakepit's supervisor threads, is unsafe.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pytest

import snakepit
from bench import _tasks
from snakepit.errors import WorkerCrashedError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
WORKERS = 2
MARK = 42
SPAWN = multiprocessing.get_context("spawn")

Submit = Callable[..., "Future[Any]"]


def _warm(submit: Submit) -> set[int]:
    """Start every worker and run a few calls through each; returns the pids seen."""
    pids = {f.result() for f in [submit(_tasks.pid_after, 0.05) for _ in range(2 * WORKERS)]}
    for _ in range(20):
        assert submit(_tasks.noop).result() is None
    return pids


def _peer() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=WORKERS, mp_context=SPAWN)


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=WORKERS) as executor:
        assert len(_warm(executor.submit)) == WORKERS
        yield executor


@pytest.fixture(scope="module")
def peer() -> Iterator[ProcessPoolExecutor]:
    with _peer() as executor:
        _warm(executor.submit)
        yield executor


def _label(nbytes: int) -> str:
    if nbytes >= GIB:
        return f"{nbytes // GIB}GiB"
    return f"{nbytes // MIB}MiB" if nbytes >= MIB else f"{nbytes // KIB}KiB"


def _tag(benchmark: Any, case: str, impl: str, **extra: Any) -> None:
    benchmark.group = f"pool-{case}"
    benchmark.extra_info.update(case=case, impl=impl, **extra)


# ------------------------------------------------------------------ (a) no-op


def test_noop_snakepit(benchmark: Any, pool: snakepit.Pool) -> None:
    _tag(benchmark, "noop", "snakepit")
    result = benchmark.pedantic(pool.call, args=(_tasks.noop,), rounds=300, warmup_rounds=20)
    assert result is None


def test_noop_peer(benchmark: Any, peer: ProcessPoolExecutor) -> None:
    _tag(benchmark, "noop", "peer")

    def call() -> Any:
        return peer.submit(_tasks.noop).result()

    result = benchmark.pedantic(call, rounds=300, warmup_rounds=20)
    assert result is None


# ------------------------------------------------- (b) array already shared

SHARED_SIZES = [
    pytest.param(KIB, id="1KiB"),
    pytest.param(100 * MIB, id="100MiB"),
    pytest.param(GIB, id="1GiB"),
]
PEER_SIZES = [pytest.param(KIB, id="1KiB"), pytest.param(100 * MIB, id="100MiB")]


@pytest.fixture(scope="module")
def shared_arrays() -> Iterator[dict[int, np.ndarray[Any, Any]]]:
    """Arrays in shared memory, created on first use (1 GiB takes a second)."""
    arrays: dict[int, np.ndarray[Any, Any]] = {}
    yield arrays
    arrays.clear()


def _shared(arrays: dict[int, np.ndarray[Any, Any]], nbytes: int) -> np.ndarray[Any, Any]:
    if nbytes not in arrays:
        array = snakepit.zeros((nbytes,), "uint8")
        array[0] = MARK
        arrays[nbytes] = array
    return arrays[nbytes]


def _plain(nbytes: int) -> np.ndarray[Any, Any]:
    array = np.zeros(nbytes, dtype=np.uint8)
    array.fill(0)  # touch every page, as snakepit.zeros does
    array[0] = MARK
    return array


@pytest.mark.parametrize("nbytes", SHARED_SIZES)
def test_shared_arg_snakepit(
    benchmark: Any, pool: snakepit.Pool, shared_arrays: dict[int, np.ndarray[Any, Any]], nbytes: int
) -> None:
    _tag(benchmark, f"shared-arg-{_label(nbytes)}", "snakepit", nbytes=nbytes)
    array = _shared(shared_arrays, nbytes)
    assert snakepit.is_shared(array)
    result = benchmark.pedantic(
        pool.call, args=(_tasks.first_element, array), rounds=200, warmup_rounds=5
    )
    assert result == MARK


@pytest.mark.parametrize("nbytes", PEER_SIZES)
def test_shared_arg_peer(benchmark: Any, peer: ProcessPoolExecutor, nbytes: int) -> None:
    _tag(benchmark, f"shared-arg-{_label(nbytes)}", "peer", nbytes=nbytes)
    array = _plain(nbytes)

    def call() -> Any:
        return peer.submit(_tasks.first_element, array).result()

    rounds = 200 if nbytes < MIB else 10
    result = benchmark.pedantic(call, rounds=rounds, warmup_rounds=1)
    assert result == MARK


# ------------------------------------------------- (c) fresh argument, sum


@pytest.fixture(scope="module")
def plain_100mib() -> np.ndarray[Any, Any]:
    """100 MiB of float32 that is not in shared memory."""
    array = np.random.default_rng(0).random(25 * MIB, dtype=np.float32)
    assert not snakepit.is_shared(array)
    return array


def test_fresh_arg_snakepit(
    benchmark: Any, pool: snakepit.Pool, plain_100mib: np.ndarray[Any, Any]
) -> None:
    _tag(benchmark, "fresh-arg-100MiB", "snakepit", nbytes=100 * MIB)
    result = benchmark.pedantic(
        pool.call, args=(_tasks.total, plain_100mib), rounds=20, warmup_rounds=2
    )
    assert math.isclose(result, float(plain_100mib.sum()), rel_tol=1e-4)


def test_fresh_arg_peer(
    benchmark: Any, peer: ProcessPoolExecutor, plain_100mib: np.ndarray[Any, Any]
) -> None:
    _tag(benchmark, "fresh-arg-100MiB", "peer", nbytes=100 * MIB)

    def call() -> Any:
        return peer.submit(_tasks.total, plain_100mib).result()

    result = benchmark.pedantic(call, rounds=8, warmup_rounds=1)
    assert math.isclose(result, float(plain_100mib.sum()), rel_tol=1e-4)


# ------------------------------------------------------------------ (d) echo


def _check_echo(result: Any, source: np.ndarray[Any, Any]) -> None:
    assert isinstance(result, np.ndarray)
    assert result.shape == source.shape
    assert result.dtype == source.dtype
    assert np.array_equal(result, source)


def test_echo_snakepit(
    benchmark: Any, pool: snakepit.Pool, plain_100mib: np.ndarray[Any, Any]
) -> None:
    _tag(benchmark, "echo-100MiB", "snakepit", nbytes=100 * MIB)

    def call() -> np.ndarray[Any, Any]:
        result: np.ndarray[Any, Any] = pool.call(_tasks.echo, plain_100mib)
        assert result.shape == plain_100mib.shape  # cheap per-round check
        return result

    result = benchmark.pedantic(call, rounds=15, warmup_rounds=2)
    _check_echo(result, plain_100mib)
    assert snakepit.is_shared(result)  # came back through shared memory


def test_echo_peer(
    benchmark: Any, peer: ProcessPoolExecutor, plain_100mib: np.ndarray[Any, Any]
) -> None:
    _tag(benchmark, "echo-100MiB", "peer", nbytes=100 * MIB)

    def call() -> np.ndarray[Any, Any]:
        result: np.ndarray[Any, Any] = peer.submit(_tasks.echo, plain_100mib).result()
        assert result.shape == plain_100mib.shape
        return result

    result = benchmark.pedantic(call, rounds=6, warmup_rounds=1)
    _check_echo(result, plain_100mib)


# -------------------------------------------------------- (e) crash recovery


def _wait_until_idle(pool: snakepit.Pool, timeout: float = 60.0) -> None:
    """Block until every worker slot is up and idle again (after a restart)."""
    deadline = time.monotonic() + timeout
    while pool.stats()["idle"] < pool.stats()["size"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"pool did not recover: {pool.stats()}")
        time.sleep(0.002)


def _crash_then_call(pool: snakepit.Pool) -> tuple[BaseException | None, int]:
    error: BaseException | None = None
    try:
        pool.call(_tasks.segfault)
    except WorkerCrashedError as exc:
        error = exc
    return error, pool.call(_tasks.pid_after, 0.0)


@pytest.mark.parametrize(
    "workers",
    [pytest.param(WORKERS, id="2workers"), pytest.param(1, id="1worker-respawn")],
)
def test_crash_recovery_snakepit(benchmark: Any, workers: int) -> None:
    # Crashes are the point here: never mark the slot unhealthy, never back off.
    case = "crash-recovery" if workers == WORKERS else "crash-recovery-respawn"
    _tag(benchmark, case, "snakepit", workers=workers)
    with snakepit.Pool(
        workers=workers, worker_max_crashes=10_000, restart_backoff=(0.0, 0.0)
    ) as crashy:
        _warm(crashy.submit)
        error, pid = benchmark.pedantic(
            _crash_then_call,
            args=(crashy,),
            setup=lambda: _wait_until_idle(crashy),
            rounds=10 if workers == WORKERS else 5,
            warmup_rounds=1,
        )
        assert isinstance(error, WorkerCrashedError)
        assert pid in crashy.worker_pids()
        _wait_until_idle(crashy)
        assert crashy.stats()["crashes"] >= 1


def test_crash_recovery_peer(benchmark: Any) -> None:
    """The peer's only recovery: shut the broken executor down, start another."""
    _tag(benchmark, "crash-recovery", "peer", workers=WORKERS)
    executors: list[ProcessPoolExecutor] = []

    def setup() -> None:
        while executors:
            executors.pop().shutdown(wait=True)
        executor = _peer()
        _warm(executor.submit)
        executors.append(executor)

    def crash_then_call() -> tuple[BaseException | None, int]:
        error: BaseException | None = None
        try:
            executors[-1].submit(_tasks.segfault).result()
        except BrokenProcessPool as exc:
            error = exc
        executors.pop().shutdown(wait=True)
        executors.append(_peer())
        return error, executors[-1].submit(_tasks.pid_after, 0.0).result()

    try:
        error, pid = benchmark.pedantic(crash_then_call, setup=setup, rounds=3, warmup_rounds=0)
    finally:
        while executors:
            executors.pop().shutdown(wait=True)
    assert isinstance(error, BrokenProcessPool)
    assert pid > 0


def test_peer_pool_is_broken_after_a_segfault() -> None:
    """A segfault breaks ProcessPoolExecutor for good; snakepit replaces the worker."""
    with _peer() as executor:
        assert executor.submit(_tasks.noop).result() is None
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.segfault).result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            executor.submit(_tasks.noop)
    with snakepit.Pool(workers=WORKERS) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        assert pool.call(_tasks.noop) is None
        _wait_until_idle(pool)
        assert len(pool.worker_pids()) == WORKERS
