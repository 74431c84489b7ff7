"""Results with shared arrays travel flat (``_wire/_flat.py: encode_result``):
each array's packed fields and whether it carries a block reference for
the receiver, with no pickler hook on either side; checked on decode."""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _flat, codec
from snakepit.errors import SerializationError
from snakepit.zero_copy import _packed

#: A pid that owns none of our blocks (a receiver in another process).
ELSEWHERE = 1
MIB = 1 << 20


def _refcount(array: np.ndarray[Any, Any]) -> int:
    return zero_copy.block_refcount(zero_copy.ref_of(array))


def _wait_for_refcount(ref: snakepit.TensorRef, expected: int) -> None:
    deadline = time.monotonic() + 10
    while zero_copy.block_refcount(ref) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    assert zero_copy.block_refcount(ref) == expected


def _assert_same_memory(received: np.ndarray[Any, Any], sent: np.ndarray[Any, Any]) -> None:
    """The two are views of one block (mapped twice here, maybe): a write shows."""
    first = received.flat[0]
    received.flat[0] = 99
    assert sent.flat[0] == 99
    received.flat[0] = first


def test_a_shared_result_for_another_process_carries_one_reference() -> None:
    shared = snakepit.share(np.arange(1000, dtype=np.float32))
    before = _refcount(shared)
    encoded = codec.encode(shared, receiver=ELSEWHERE, snapshot=False)
    blob = encoded.blob
    assert _flat.is_flat(blob)
    assert blob[2] == _flat.VALUE
    ((slot, packed, transferred),) = blob[3]
    assert (slot, transferred) == (0, True)
    assert packed == _packed.packed_of(shared)
    assert _refcount(shared) == before + 1  # the receiver's, to adopt
    back = codec.decode(blob, keep=True)  # here as the receiver: it adopts that one
    assert _refcount(shared) == before + 1
    assert back.tolist() == shared.tolist()
    _assert_same_memory(back, shared)
    del back
    assert _refcount(shared) == before


def test_a_result_the_receiver_owns_takes_no_reference_and_is_referenced_on_arrival() -> None:
    shared = snakepit.share(np.ones((4, 4)))
    before = _refcount(shared)
    blob = codec.encode(shared, receiver=os.getpid(), snapshot=False).blob
    assert blob[3][0][2] is False
    assert _refcount(shared) == before
    back = codec.decode(blob, keep=True)
    assert _refcount(shared) == before + 1  # its own reference
    del back
    assert _refcount(shared) == before


def test_tuples_and_dicts_mix_shared_small_and_scalar_parts() -> None:
    shared = snakepit.share(np.arange(6, dtype=np.int64).reshape(2, 3))
    small = np.array([0.5, 0.25])
    blob = codec.encode((shared, small, "ok", None, 3), receiver=ELSEWHERE).blob
    assert blob[2] == _flat.TUPLE
    back = codec.decode(blob, keep=True)
    assert type(back) is tuple
    assert back[2:] == ("ok", None, 3)
    assert back[0].shape == (2, 3)
    _assert_same_memory(back[0], shared)
    assert not np.shares_memory(back[1], small)
    assert back[1].tolist() == [0.5, 0.25]
    pair = codec.decode(codec.encode((shared, shared[1]), receiver=ELSEWHERE).blob, keep=True)
    assert pair[1].tolist() == [3, 4, 5]
    named = codec.decode(codec.encode({"a": shared, "n": 1.5}, receiver=ELSEWHERE).blob, keep=True)
    assert list(named) == ["a", "n"]
    assert named["n"] == 1.5
    assert named["a"].tolist() == shared.tolist()
    del back, pair, named
    assert _refcount(shared) == 1


def test_a_large_fresh_result_is_copied_into_shared_memory_once() -> None:
    fresh = np.arange(MIB // 8, dtype=np.float64)
    encoded = codec.encode(fresh, receiver=ELSEWHERE, snapshot=False)
    assert _flat.is_flat(encoded.blob)
    (copy,) = encoded.keepalive
    assert zero_copy.is_shared(copy)
    assert not np.shares_memory(copy, fresh)
    back = codec.decode(encoded.blob, keep=True)
    del encoded, copy
    assert np.array_equal(back, fresh)
    ref = zero_copy.ref_of(back)
    assert zero_copy.block_refcount(ref) == 1  # the transferred one, adopted
    del back


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros(MIB // 16),  # between the inline and the shared sizes
        lambda: (lambda a: (a, a))(snakepit.share(np.ones(8))),  # one array twice
        lambda: (snakepit.share(np.ones(8)), [1]),  # a list beside it
        lambda: np.zeros(MIB // 8)[::2],  # large, not contiguous: copied the general way
        lambda: tuple(snakepit.share(np.ones(2)) for _ in range(17)),  # past 16 parts
        lambda: {f"k{i}": snakepit.share(np.ones(2)) for i in range(17)},
    ],
    ids=["between", "twice", "list", "strided", "17-tuple", "17-dict"],
)
def test_other_results_with_arrays_go_the_general_way(make: Any) -> None:
    value = make()
    blob = codec.encode(value, receiver=ELSEWHERE).blob
    assert not _flat.is_flat(blob)
    back = codec.decode(blob, keep=True)
    assert pickle.dumps(_plain(back)) == pickle.dumps(_plain(value))
    del back


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.tolist(), value.flags.writeable)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


@pytest.mark.parametrize("transferred", [1, None, "yes", 1.0])
def test_a_transfer_flag_that_is_not_a_bool_is_refused(transferred: Any) -> None:
    shared = snakepit.share(np.ones(4))
    packed = _packed.packed_of(shared)
    blob = (pickle.dumps(((None,), {}), protocol=5), (), "value", ((0, packed, transferred),))
    with pytest.raises(SerializationError, match="malformed flat descriptor"):
        codec.decode(blob, keep=True)
    assert _refcount(shared) == 1  # nothing adopted, nothing taken


def test_call_arguments_may_not_carry_a_transfer_flag() -> None:
    shared = snakepit.share(np.ones(4))
    packed = _packed.packed_of(shared)
    blob = (pickle.dumps(((None,), {}), protocol=5), (), None, ((0, packed, False),))
    with pytest.raises(SerializationError, match="malformed flat descriptor"):
        codec.decode(blob)


def test_a_pool_returns_shared_arrays_flat_in_every_form_and_references_balance() -> None:
    with snakepit.Pool(1, timeout=60) as pool:
        pool.call(_fresh, "value")  # the worker's arena exists from here on
        alone = pool.call(_fresh, "value")
        ref = zero_copy.ref_of(alone)
        assert ref.region.split("-")[1] != str(os.getpid())  # the worker's block
        _wait_for_refcount(ref, 1)  # ours alone once the worker let go
        assert alone[-1] == float(MIB // 8 - 1)
        pair = pool.call(_fresh, "tuple")
        assert pair[1:] == ("ok", 7)
        assert np.array_equal(pair[0], np.arange(MIB // 8, dtype=np.float64))
        named = pool.call(_fresh, "dict")
        assert named["small"].tolist() == [1.0, 2.0]
        assert named["big"].sum() == MIB // 8
        shared = snakepit.share(np.arange(MIB // 8, dtype=np.float64))
        back = pool.call(_same, shared)  # our own block, returned
        _assert_same_memory(back, shared)
        del back
        # The worker held the argument it returned until its reply was out.
        _wait_for_refcount(zero_copy.ref_of(shared), 1)
        del alone
        assert zero_copy.block_refcount(ref) == 0


def _fresh(form: str) -> Any:
    big = np.arange(MIB // 8, dtype=np.float64)
    if form == "value":
        return big
    if form == "tuple":
        return big, "ok", 7
    return {"big": np.ones(MIB // 8), "small": np.array([1.0, 2.0])}


def _same(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return array


def test_every_size_from_empty_to_large_travels_flat_in_one_tuple() -> None:
    parts = (
        np.zeros((0, 3)),  # empty
        np.array(2.5),  # 0-d
        np.arange(1024, dtype=np.uint8),  # 1 KiB, inline
        np.arange(MIB // 4, dtype=np.float32),  # 1 MiB, copied into shared memory
        np.arange(16 * MIB // 8, dtype=np.float64),  # 16 MiB
        *(snakepit.share(np.full(3, i)) for i in range(11)),  # 16 parts in all
    )
    blob = codec.encode(parts, receiver=ELSEWHERE, snapshot=False).blob
    assert _flat.is_flat(blob)
    assert [len(slot) for slot in blob[3]][:5] == [4, 4, 4, 3, 3]  # inline, then shared
    back = codec.decode(blob, keep=True)
    assert len(back) == len(parts)
    for got, sent in zip(back, parts, strict=True):
        assert got.dtype == sent.dtype
        assert got.shape == sent.shape
        assert np.array_equal(got, sent)
