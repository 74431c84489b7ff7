"""Payloads that travel inline (in the frame, not through shared memory).

``bytes`` are never put in shared memory, and arrays below the 1 MiB
threshold are pickled into the frame, so these cases measure the frame path
itself: snakepit against ProcessPoolExecutor, one worker each, same run.

- ``inline-bytes-arg-*``: a ``bytes`` argument; the worker returns its length.
- ``inline-bytes-result-*``: the worker returns a fresh ``bytes`` of that size.
- ``inline-arrays-arg-32MiB``: a list of 64 float32 arrays of 512 KiB each.

Target: snakepit no slower than the peer at every size (``bench/report.py``).
How the cost grows with size is checked without timing in
``tests/pool/test_pool_inline.py``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

import snakepit
from bench import _tasks

MIB = 1 << 20
SIZES = [pytest.param(n * MIB, id=f"{n}MiB") for n in (1, 16, 64, 256)]
SPAWN = multiprocessing.get_context("spawn")
Submit = Callable[..., "Future[Any]"]


def _rounds(nbytes: int) -> int:
    return 5 if nbytes >= 64 * MIB else 20


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as executor:
        assert executor.call(_tasks.size_of, b"warm") == 4
        yield executor


@pytest.fixture(scope="module")
def peer() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as executor:
        assert executor.submit(_tasks.size_of, b"warm").result() == 4
        yield executor


@pytest.fixture(scope="module")
def arrays() -> list[np.ndarray[Any, Any]]:
    """64 arrays of 512 KiB: each below the shared-memory threshold."""
    items = [np.full(128 << 10, index, dtype=np.float32) for index in range(64)]
    assert not any(snakepit.is_shared(item) for item in items)
    return items


def _submitter(impl: str, pool: snakepit.Pool, peer: ProcessPoolExecutor) -> Submit:
    return pool.submit if impl == "snakepit" else peer.submit


def _tag(benchmark: Any, case: str, impl: str, nbytes: int) -> None:
    benchmark.group = f"inline-{case}"
    benchmark.extra_info.update(case=case, impl=impl, nbytes=nbytes)


def _label(nbytes: int) -> str:
    return f"{nbytes // MIB}MiB"


@pytest.mark.parametrize("impl", ["snakepit", "peer"])
@pytest.mark.parametrize("nbytes", SIZES)
def test_bytes_argument(
    benchmark: Any, pool: snakepit.Pool, peer: ProcessPoolExecutor, nbytes: int, impl: str
) -> None:
    _tag(benchmark, f"inline-bytes-arg-{_label(nbytes)}", impl, nbytes)
    submit = _submitter(impl, pool, peer)
    payload = bytes(nbytes)
    result = benchmark.pedantic(
        lambda: submit(_tasks.size_of, payload).result(),
        rounds=_rounds(nbytes),
        warmup_rounds=1,
    )
    assert result == nbytes


@pytest.mark.parametrize("impl", ["snakepit", "peer"])
@pytest.mark.parametrize("nbytes", SIZES)
def test_bytes_result(
    benchmark: Any, pool: snakepit.Pool, peer: ProcessPoolExecutor, nbytes: int, impl: str
) -> None:
    _tag(benchmark, f"inline-bytes-result-{_label(nbytes)}", impl, nbytes)
    submit = _submitter(impl, pool, peer)
    result = benchmark.pedantic(
        lambda: submit(_tasks.make_bytes, nbytes).result(),
        rounds=_rounds(nbytes),
        warmup_rounds=1,
    )
    assert type(result) is bytes
    assert len(result) == nbytes


@pytest.mark.parametrize("impl", ["snakepit", "peer"])
def test_small_arrays_argument(
    benchmark: Any,
    pool: snakepit.Pool,
    peer: ProcessPoolExecutor,
    arrays: list[np.ndarray[Any, Any]],
    impl: str,
) -> None:
    nbytes = sum(item.nbytes for item in arrays)
    _tag(benchmark, "inline-arrays-arg-32MiB", impl, nbytes)
    submit = _submitter(impl, pool, peer)
    result = benchmark.pedantic(
        lambda: submit(_tasks.size_of, arrays).result(), rounds=20, warmup_rounds=1
    )
    assert result == nbytes == 32 * MIB
