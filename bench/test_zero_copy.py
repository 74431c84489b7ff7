"""Shared-memory allocation and copy-in costs.

- ``alloc-*``: ``snakepit.empty`` from the pre-faulted arena (the block is
  dropped at once, so it is reused) against creating, closing and unlinking a
  ``multiprocessing.shared_memory.SharedMemory`` of the same size.
  Target: the arena at least 20x faster at 1 MiB.
- ``share-100MiB``: ``snakepit.share`` of a 100 MiB float32 array (the block is
  released after each round, so it is reused) against ``np.copyto`` into a
  preallocated array. Target: share within 1.5x of copyto.

``bench/report.py`` turns a ``--benchmark-json`` file into these ratios.
"""

from __future__ import annotations

from multiprocessing import shared_memory
from typing import Any

import numpy as np
import pytest

import snakepit

KIB = 1 << 10
MIB = 1 << 20

SIZES = [
    pytest.param(KIB, id="1KiB"),
    pytest.param(MIB, id="1MiB"),
    pytest.param(100 * MIB, id="100MiB"),
]


def _label(nbytes: int) -> str:
    return f"{nbytes // MIB}MiB" if nbytes >= MIB else f"{nbytes // KIB}KiB"


def _arena_alloc(nbytes: int) -> int:
    array = snakepit.empty((nbytes,), "uint8")
    size = int(array.nbytes)
    del array  # the block goes back to the arena for the next round
    return size


def _stdlib_alloc(nbytes: int) -> int:
    segment = shared_memory.SharedMemory(create=True, size=nbytes)
    size = segment.size
    segment.close()
    segment.unlink()
    return size


@pytest.mark.parametrize("nbytes", SIZES)
def test_alloc_arena(benchmark: Any, nbytes: int) -> None:
    benchmark.group = f"alloc-{_label(nbytes)}"
    benchmark.extra_info.update(case=f"alloc-{_label(nbytes)}", impl="snakepit", nbytes=nbytes)
    _arena_alloc(nbytes)  # first use maps the region: not what is measured
    # Many iterations per round: a single call is close to the timer's own cost.
    size = benchmark.pedantic(
        _arena_alloc, args=(nbytes,), rounds=100, iterations=50, warmup_rounds=2
    )
    assert size == nbytes
    assert snakepit.zero_copy.arena_stats()["reuses"] > 0


@pytest.mark.parametrize("nbytes", SIZES)
def test_alloc_shared_memory(benchmark: Any, nbytes: int) -> None:
    benchmark.group = f"alloc-{_label(nbytes)}"
    benchmark.extra_info.update(case=f"alloc-{_label(nbytes)}", impl="peer", nbytes=nbytes)
    size = benchmark.pedantic(
        _stdlib_alloc, args=(nbytes,), rounds=100, iterations=50, warmup_rounds=2
    )
    # SharedMemory rounds up to whole pages.
    assert size >= nbytes


@pytest.fixture(scope="module")
def source_100mib() -> np.ndarray[Any, Any]:
    """100 MiB of float32 with distinct values at both ends (pages really touched)."""
    array = np.ones(25 * MIB, dtype=np.float32)
    array[0] = 3.0
    array[-1] = 5.0
    return array


def _share_and_release(source: np.ndarray[Any, Any]) -> bool:
    shared = snakepit.share(source)
    ok = shared.shape == source.shape and shared[0] == 3.0 and shared[-1] == 5.0
    ok = ok and snakepit.is_shared(shared)
    snakepit.ref_of(shared).release()  # the block is reusable by the next round
    return bool(ok)


def test_share_100mib(benchmark: Any, source_100mib: np.ndarray[Any, Any]) -> None:
    benchmark.group = "share-100MiB"
    benchmark.extra_info.update(case="share-100MiB", impl="snakepit", nbytes=100 * MIB)
    assert benchmark.pedantic(_share_and_release, args=(source_100mib,), rounds=40, warmup_rounds=5)


def test_copyto_100mib(benchmark: Any, source_100mib: np.ndarray[Any, Any]) -> None:
    benchmark.group = "share-100MiB"
    benchmark.extra_info.update(case="share-100MiB", impl="peer", nbytes=100 * MIB)
    destination = np.empty_like(source_100mib)
    destination.fill(0.0)  # fault the pages in, as the arena does

    def copy() -> np.ndarray[Any, Any]:
        np.copyto(destination, source_100mib)
        return destination

    result = benchmark.pedantic(copy, rounds=40, warmup_rounds=5)
    assert result[0] == 3.0
    assert result[-1] == 5.0
