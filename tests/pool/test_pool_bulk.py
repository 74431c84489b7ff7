"""A batch of small argument arrays whose total reaches the threshold travels
through shared memory as one block, with the lifetimes of any shared
argument; arrays the worker sends back from it stay in it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy

from . import _tasks

KIB = 1 << 10


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as pool:
        yield pool


def _arrays(count: int) -> list[np.ndarray[Any, Any]]:
    return [np.full(128 * KIB, index, dtype=np.float32) for index in range(count)]


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_batch_goes_through_one_block_and_comes_back_in_it(
    pool: snakepit.Pool, idempotent: bool
) -> None:
    arrays = _arrays(8)  # 4 MiB of 512 KiB arrays, each below the threshold
    back, flags = pool.options(idempotent=idempotent).call(_tasks.bulk_echo, arrays)
    assert flags == [True] * 8  # the worker got shared, writable arrays
    for sent, received in zip(arrays, back, strict=True):
        assert np.array_equal(sent, received)
        assert snakepit.is_shared(received)
        assert received.flags.writeable
    # The caller's own arrays were copied, not lent: they stay the caller's.
    assert not any(snakepit.is_shared(a) for a in arrays)


def test_a_result_block_lives_as_long_as_its_views(pool: snakepit.Pool) -> None:
    back, _ = pool.call(_tasks.bulk_echo, _arrays(4))
    ref = zero_copy.ref_of(back[0])
    assert zero_copy.block_refcount(ref) >= 1
    last = back[-1]
    del back
    gc.collect()
    assert float(last[0]) == 3.0  # still valid: the view keeps the block
    assert zero_copy.block_refcount(ref) >= 1
    ref.release()


def test_an_argument_the_worker_keeps_stays_valid(pool: snakepit.Pool) -> None:
    arrays = _arrays(8)
    pool.call(_tasks.keep_arguments, arrays)
    del arrays
    gc.collect()
    for _ in range(3):  # the caller's blocks get reused meanwhile
        pool.call(_tasks.bulk_echo, [np.zeros(128 * KIB, np.float32) for _ in range(8)])
    assert pool.call(_tasks.kept_total) == 7.0 * 64 * KIB
