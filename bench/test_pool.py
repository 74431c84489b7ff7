"""snakepit.Pool against concurrent.futures.ProcessPoolExecutor, 2 workers each.

No-op round trip (and its floor, a raw os.pipe ping-pong; loky when
installed), chunked map, zero-copy hand-off (against pickle and
multiprocessing.shared_memory), a fresh 100 MiB argument and the echo of an
array. Crash recovery is in ``test_lifecycle.py``; the test below checks
why the peer's only recovery is a new executor.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``pool``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

import snakepit
from bench._harness import measure, params
from snakepit._bench import tasks
from snakepit._bench._model import peer_executor, wait_until_idle
from snakepit._bench.cases import WORKERS, Case, Env, Impl, peer_stays_broken
from snakepit.errors import WorkerCrashedError


@pytest.mark.parametrize(("case", "impl"), params("pool"))
def test_pool(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)


def test_peer_pool_is_broken_after_a_segfault() -> None:
    """A segfault breaks ProcessPoolExecutor for good; snakepit replaces the worker."""
    with peer_executor() as executor:
        assert executor.submit(tasks.noop).result() is None
        with pytest.raises(BrokenProcessPool):
            executor.submit(tasks.segfault).result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            executor.submit(tasks.noop)
    assert peer_stays_broken()
    with snakepit.Pool(workers=WORKERS) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(tasks.segfault)
        assert pool.call(tasks.noop) is None
        wait_until_idle(pool)
        assert len(pool.worker_pids()) == WORKERS
