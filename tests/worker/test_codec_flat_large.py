"""A fresh call argument from the shared-memory threshold up: copied into the
arena as the general way would copy it, and described flat (``_flat``)."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _bulk, _flat, codec
from snakepit.errors import SharedMemoryError
from snakepit.zero_copy import _numpy


def _large(dtype: Any = np.float32, extra: int = 0) -> np.ndarray[Any, Any]:
    count = zero_copy.threshold_bytes() // np.dtype(dtype).itemsize + extra
    return np.arange(count, dtype=dtype)


@pytest.fixture
def threshold() -> Iterator[int]:
    before = zero_copy.threshold_bytes()
    yield before
    zero_copy.configure(threshold_bytes=before)


@pytest.mark.parametrize("extra", [0, 1, 1000])
@pytest.mark.parametrize("with_scalars", [False, True])
def test_a_fresh_array_from_the_threshold_up_travels_flat_as_a_shared_copy(
    extra: int, with_scalars: bool
) -> None:
    source = _large(extra=extra)
    args = (source, 0.5, "s") if with_scalars else (source,)
    encoded = codec.encode((args, {}))
    blob = encoded.blob
    assert _flat.is_flat(blob)
    (slot,) = blob[3]
    assert slot[0] == 0
    assert type(slot[1]) is bytes
    # The caller keeps the copy alive for the call; the source is not it.
    (copy,) = encoded.keepalive
    assert copy is not source
    assert snakepit.is_shared(copy)
    source[0] = -1.0  # a change after the call was encoded does not travel
    back_args, back_kwargs = codec.decode(blob)
    assert back_kwargs == {}
    assert back_args[1:] == args[1:]
    assert back_args[0][0] == 0.0
    assert np.array_equal(back_args[0][1:], source[1:])
    assert back_args[0].flags.writeable
    assert back_args[0].flags.c_contiguous


def test_between_the_two_sizes_it_goes_the_general_way() -> None:
    middle = np.ones(_bulk.OUT_OF_BAND_BYTES, np.uint8)
    assert middle.nbytes < zero_copy.threshold_bytes()
    blob = codec.encode(((middle,), {})).blob
    assert not _flat.is_flat(blob)
    assert np.array_equal(codec.decode(blob)[0][0], middle)


def test_the_threshold_is_the_one_configured(threshold: int) -> None:
    source = np.ones(threshold // 32, np.float64)  # a quarter of the threshold
    assert not _flat.is_flat(codec.encode(((source,), {})).blob)
    zero_copy.configure(threshold_bytes=source.nbytes)
    assert _flat.is_flat(codec.encode(((source,), {})).blob)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: ((a, a), {}),  # twice: the general way keeps it one object
        lambda a: ((a,), {"out": a}),
        lambda a: ((np.asfortranarray(a.reshape(2, -1)),), {}),
        lambda a: ((a[::2].copy()[::2],), {}),  # strided
        lambda a: ((a.astype(">f4"),), {}),
    ],
    ids=["twice", "twice-keyword", "fortran", "strided", "big-endian"],
)
def test_what_the_flat_way_cannot_say_goes_the_general_way_and_arrives_the_same(
    make: Any,
) -> None:
    value = make(_large(extra=4096))
    back = codec.decode(codec.encode(value).blob)
    flat_args = list(value[0]) + list(value[1].values())
    back_args = list(back[0]) + list(back[1].values())
    for sent, got in zip(flat_args, back_args, strict=True):
        assert np.array_equal(got, sent)
        assert got.dtype == sent.dtype
    if len(back_args) == 2:
        assert back_args[0] is back_args[1]


def test_a_large_fresh_keyword_argument_travels_flat_too() -> None:
    source = _large(np.int64)
    blob = codec.encode(((1,), {"data": source})).blob
    assert _flat.is_flat(blob)
    args, kwargs = codec.decode(blob)
    assert args == (1,)
    assert np.array_equal(kwargs["data"], source)


def test_a_read_only_array_the_host_keeps_read_only_goes_the_general_way() -> None:
    source = _large()
    source.flags.writeable = False
    _numpy.keep_readonly(True)
    try:
        blob = codec.encode(((source,), {})).blob
    finally:
        _numpy.keep_readonly(False)
    assert not _flat.is_flat(blob)
    assert not codec.decode(blob)[0][0].flags.writeable
    # Without the host's rule it is a copy like any other, writable.
    blob = codec.encode(((source,), {})).blob
    assert _flat.is_flat(blob)
    assert codec.decode(blob)[0][0].flags.writeable


def test_an_object_array_is_pickled_whatever_its_size() -> None:
    source = np.array([None] * (zero_copy.threshold_bytes() // 8 + 1), dtype=object)
    blob = codec.encode(((source,), {})).blob
    assert not _flat.is_flat(blob)
    assert codec.decode(blob)[0][0].tolist() == source.tolist()


def test_no_room_in_shared_memory_is_the_general_way_s_error(monkeypatch: Any) -> None:
    def full(array: Any, threshold: int) -> Any:
        raise SharedMemoryError("no room")

    monkeypatch.setattr(_numpy, "to_block", full)
    with pytest.raises(SharedMemoryError, match="no room"):
        codec.encode(((_large(),), {}))


def test_through_a_pool_the_worker_gets_a_copy_and_no_block_outlives_the_call() -> None:
    source = _large(np.float64, extra=3)
    with snakepit.Pool(workers=1, preload=["numpy"], timeout=60) as pool:
        assert pool.call(np.sum, source) == source.sum()
        in_use = zero_copy.arena_stats()["live_blocks"]
        for _ in range(20):
            assert pool.call(np.sum, source) == source.sum()
        # Released blocks may be reclaimed a little later, never kept: a
        # copy per call that outlived its call would add 20.
        assert zero_copy.arena_stats()["live_blocks"] <= in_use
        pool.call(operator.imul, source, 2.0)  # the worker changes its copy only
    assert source[1] == 1.0
    assert pickle.loads(pickle.dumps(source))[2] == 2.0


def test_a_call_that_goes_the_general_way_copies_its_large_array_once(monkeypatch: Any) -> None:
    copies: list[int] = []
    to_block = _numpy.to_block

    def counted(array: Any, threshold: int) -> Any:
        copies.append(array.nbytes)
        return to_block(array, threshold)

    monkeypatch.setattr(_numpy, "to_block", counted)
    source = _large()
    # The list after the array sends the whole call the general way.
    blob = codec.encode(((source, [1, 2]), {})).blob
    assert not _flat.is_flat(blob)
    assert copies == [source.nbytes]
    args, _ = codec.decode(blob)
    assert np.array_equal(args[0], source)
    assert args[1] == [1, 2]


def _write_then_die(array: np.ndarray[Any, Any]) -> None:
    import os

    array[0] = -5.0  # into the call's copy, not the caller's array
    os._exit(137)


def test_a_worker_that_dies_holding_a_large_copy_loses_nothing() -> None:
    from snakepit.errors import WorkerCrashedError

    source = _large(np.float64)
    with snakepit.Pool(workers=1, preload=["numpy"], timeout=60) as pool:
        assert pool.call(np.sum, source) == source.sum()
        before = zero_copy.arena_stats()["live_blocks"]
        for _ in range(3):
            with pytest.raises(WorkerCrashedError):
                pool.call(_write_then_die, source)
        assert source[0] == 0.0
        assert pool.call(np.sum, source) == source.sum()  # the next worker gets a fresh copy
        assert zero_copy.arena_stats()["live_blocks"] <= before
