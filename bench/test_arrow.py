"""Arrow tables as call arguments: snakepit.Pool against ProcessPoolExecutor.

Both executors (1 worker each) are created once per module and warmed up;
every case runs against both in the same session, so ``bench/report.py`` can
divide medians. The worker reads one value of a 100 MiB ``pyarrow.Table``
(an int64 and a float64 column):

- ``arrow-fresh-100MiB``: a plain table (not in shared memory). snakepit
  writes it once, as an Arrow IPC stream, into shared memory; the worker
  opens it without a copy. The peer pickles the table (protocol 5, in band).
  Target: snakepit >= 10x faster.
- ``arrow-shared-100MiB``: the same table after ``snakepit.share_table``:
  only a descriptor travels. snakepit alone (the peer has no shared tables:
  its figure is the one above).

The peer uses the ``spawn`` start method: forking this process, which runs
snakepit's supervisor threads, is unsafe.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

import snakepit
from bench import _tasks

pa = pytest.importorskip("pyarrow")

MIB = 1 << 20
ROWS = (100 * MIB) // 16  # two 8-byte columns: 100 MiB
MARK = 42
SPAWN = multiprocessing.get_context("spawn")


def first_value(table: Any) -> int:
    """Read one value of the table: the cost is the transfer, not the work."""
    return int(table.column(0)[0].as_py())


def _tag(benchmark: Any, case: str, impl: str) -> None:
    benchmark.group = f"pool-{case}"
    benchmark.extra_info.update(case=case, impl=impl, nbytes=100 * MIB)


@pytest.fixture(scope="module")
def table() -> Any:
    """100 MiB, single chunk, not in shared memory."""
    ints = np.arange(ROWS, dtype=np.int64)
    ints[0] = MARK
    floats = np.random.default_rng(0).random(ROWS)
    result = pa.table({"i": ints, "f": floats})
    assert result.nbytes == 100 * MIB
    return result


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as executor:
        for _ in range(20):
            assert executor.call(_tasks.noop) is None
        # The worker imports pyarrow (and maps the arena) before timing starts.
        assert executor.call(first_value, pa.table({"i": [MARK]})) == MARK
        yield executor


@pytest.fixture(scope="module")
def peer() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as executor:
        for _ in range(20):
            assert executor.submit(_tasks.noop).result() is None
        assert executor.submit(first_value, pa.table({"i": [MARK]})).result() == MARK
        yield executor


def test_arrow_fresh_snakepit(benchmark: Any, pool: snakepit.Pool, table: Any) -> None:
    _tag(benchmark, "arrow-fresh-100MiB", "snakepit")
    assert not snakepit.zero_copy.is_shared_table(table)
    result = benchmark.pedantic(pool.call, args=(first_value, table), rounds=20, warmup_rounds=2)
    assert result == MARK


def test_arrow_fresh_peer(benchmark: Any, peer: ProcessPoolExecutor, table: Any) -> None:
    _tag(benchmark, "arrow-fresh-100MiB", "peer")

    def call() -> Any:
        return peer.submit(first_value, table).result()

    result = benchmark.pedantic(call, rounds=8, warmup_rounds=1)
    assert result == MARK


def test_arrow_shared_snakepit(benchmark: Any, pool: snakepit.Pool, table: Any) -> None:
    _tag(benchmark, "arrow-shared-100MiB", "snakepit")
    shared = snakepit.share_table(table)
    result = benchmark.pedantic(pool.call, args=(first_value, shared), rounds=200, warmup_rounds=5)
    assert result == MARK
