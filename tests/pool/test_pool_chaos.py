"""Chaos: threads submit calls of random sizes and options while workers crash,
hang and are killed from outside, with timeouts, retries and a shutdown in the
middle. Every future completes, every result is right, the counters add up,
and /dev/shm, file descriptors, threads and processes return to baseline."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import os
import random
import signal
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import psutil

import snakepit
from snakepit.errors import (
    PythonError,
    SnakepitError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool import CircuitBreakerRegistry, RetryPolicy
from snakepit.zero_copy import list_regions
from tests.pool import _tasks

KINDS = ["ok"] * 6 + ["array"] * 3 + ["raise", "segfault", "abort", "hang"]


def _expected(kind: str, size: int, seed: int) -> Any:
    if kind == "array":
        return int(np.full(size, seed % 251, dtype=np.uint8).sum())
    return size + seed


def _dead_workers_segments() -> list[str]:
    """Regions in /dev/shm whose owner is dead (the pool should have removed them)."""
    return [name for name in list_regions() if not psutil.pid_exists(int(name.split("-")[1]))]


def _fd_links() -> set[str]:
    links = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            links.add(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
    return links


def _snakepit_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("snakepit-")}


def _succeeded(
    submitted: list[tuple[Future[Any], str, int, int, bool]], lock: threading.Lock
) -> int:
    with lock:
        futures = [future for future, *_ in submitted]
    return sum(
        1
        for future in futures
        if future.done() and not future.cancelled() and not future.exception()
    )


def test_chaos_every_future_completes_and_nothing_leaks() -> None:
    rng = random.Random(20261201)
    me = psutil.Process()
    # This process's own arena lives as long as the process: map it first.
    with snakepit.Pool(workers=1) as warm:
        warm.call(_tasks.shared_result, 1 << 16)
    links_before = _fd_links()
    threads_before = _snakepit_threads()
    # Children of this process from before (multiprocessing's resource
    # tracker, once a test has used its shared memory) are not the pool's.
    children_before = {child.pid for child in me.children()}
    pool = snakepit.Pool(
        workers=2,
        terminate_grace=0.2,
        worker_max_crashes=10_000,
        restart_backoff=(0.0, 0.05),
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05, jitter=0.0),
        # Workers are replaced in milliseconds: enough failures in a row to
        # open a default circuit would turn the rest of the chaos away.
        circuit_breaker=CircuitBreakerRegistry(failure_threshold=1_000_000),
    )
    submitted: list[tuple[Future[Any], str, int, int, bool]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submitter(seed: int) -> None:
        local = random.Random(seed)
        while not stop.is_set():
            kind = local.choice(KINDS)
            size = local.choice([0, 10, 70_000, 2 << 20])
            value = local.randrange(1000)
            idempotent = local.random() < 0.3
            timeout = 0.5 if kind == "hang" or local.random() < 0.2 else None
            try:
                future = pool.options(timeout=timeout, idempotent=idempotent).submit(
                    _tasks.chaos_step, kind, size, value
                )
            except WorkerUnavailableError:
                return  # the pool was shut down: expected from here on
            with lock:
                submitted.append((future, kind, size, value, idempotent))
            time.sleep(local.random() * 0.01)

    def killer() -> None:
        while not stop.is_set():
            time.sleep(rng.random() * 0.3)
            pids = pool.worker_pids()
            if pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(pids), rng.choice([signal.SIGKILL, signal.SIGSEGV]))

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=killer))
    for thread in threads:
        thread.start()
    # At least 4 s of chaos, longer on a loaded machine: until enough calls
    # have succeeded for the checks below to mean something.
    started = time.monotonic()
    while time.monotonic() - started < 4.0 or (
        _succeeded(submitted, lock) < 10 and time.monotonic() - started < 60.0
    ):
        time.sleep(0.1)
    pool.shutdown(wait=False, cancel_futures=True)  # in the middle of it all
    stop.set()
    for thread in threads:
        thread.join(30)

    done_futures, pending = concurrent.futures.wait([f for f, *_ in submitted], timeout=60)
    assert not pending, f"{len(pending)} futures never completed"
    outcomes = {"ok": 0, "failed": 0, "cancelled": 0}
    for future, kind, size, value, _ in submitted:
        if future.cancelled():
            outcomes["cancelled"] += 1
            continue
        error = future.exception()
        if error is None:
            assert kind in ("ok", "array")
            assert future.result() == _expected(kind, size, value)
            outcomes["ok"] += 1
            continue
        outcomes["failed"] += 1
        assert isinstance(error, SnakepitError), repr(error)
        if kind == "raise":
            assert isinstance(
                error, (PythonError, WorkerCrashedError, WorkerTimeoutError, WorkerUnavailableError)
            )
        elif kind == "hang":
            assert isinstance(
                error, (WorkerTimeoutError, WorkerCrashedError, WorkerUnavailableError)
            )
    assert outcomes["ok"] >= 10
    stats = pool.stats()
    assert stats["completed"] == outcomes["ok"]
    assert stats["failed"] == outcomes["failed"]

    pool.shutdown(wait=True)
    del done_futures
    submitted.clear()
    gc.collect()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (
            not _dead_workers_segments()
            and not _fd_links() - links_before
            and _snakepit_threads() <= threads_before
            and not _live_children(me, children_before)
        ):
            break
        time.sleep(0.1)
    assert not _dead_workers_segments()
    assert _snakepit_threads() <= threads_before, _snakepit_threads()
    assert not _fd_links() - links_before
    assert not _live_children(me, children_before)


def _live_children(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    return [
        child
        for child in me.children()
        if child.pid not in before and child.status() != psutil.STATUS_ZOMBIE
    ]
