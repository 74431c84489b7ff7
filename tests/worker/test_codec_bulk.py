"""Small arrays in bulk: from the threshold up, the out-of-band data of a
payload travels in one shared block, each array a view of it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _bulk, codec
from snakepit.errors import SerializationError

KIB = 1 << 10
MIB = 1 << 20
NOT_US = 1  # a receiver pid other than ours: blocks then carry a reference


@pytest.fixture(autouse=True)
def threshold() -> Iterator[None]:
    before = zero_copy.threshold_bytes()
    zero_copy.configure(threshold_bytes=1 * MIB)
    yield
    zero_copy.configure(threshold_bytes=before)


def _arrays(count: int, nbytes: int = 512 * KIB) -> list[np.ndarray[Any, Any]]:
    return [np.full(nbytes // 4, index, dtype=np.float32) for index in range(count)]


def _block_ref(encoded: codec.Encoded) -> Any:
    return zero_copy.ref_of(encoded.keepalive[-1])


def test_arrays_below_the_threshold_whose_total_reaches_it_share_one_block() -> None:
    arrays = _arrays(8)
    encoded = codec.encode(arrays)
    assert encoded.bulk is not None
    assert encoded.buffers == []
    assert len(encoded.keepalive) == 1  # the one block
    assert len(encoded.payload) < 4 * KIB
    back = codec.decode(encoded.blob)
    assert len(back) == len(arrays)
    bases = set()
    for sent, received in zip(arrays, back, strict=True):
        assert np.array_equal(sent, received)
        assert received.flags.writeable
        assert snakepit.is_shared(received)
        assert received.__array_interface__["data"][0] % _bulk.ALIGNMENT == 0
        bases.add(zero_copy.ref_of(received).region)
    assert len(bases) == 1


def test_below_the_threshold_in_total_they_travel_in_the_frame() -> None:
    encoded = codec.encode(_arrays(1))
    assert encoded.bulk is None
    assert len(encoded.buffers) == 1
    assert not snakepit.is_shared(codec.decode(encoded.blob)[0])


def test_the_threshold_is_the_configured_one() -> None:
    zero_copy.configure(threshold_bytes=8 * MIB)
    assert codec.encode(_arrays(8)).bulk is None
    assert codec.encode(_arrays(16)).bulk is not None


def test_the_block_is_a_copy_taken_at_encoding() -> None:
    arrays = _arrays(4)
    encoded = codec.encode(arrays, snapshot=False)
    blob = encoded.blob
    assert codec.snapshot(blob) is blob  # nothing left to copy
    arrays[0][:] = -1.0
    assert codec.decode(blob)[0][0] == 0.0


def test_odd_dtypes_join_the_block() -> None:
    structured = np.zeros(64 * KIB, dtype=[("a", "i4"), ("b", "f4")])
    value = [structured, *_arrays(2)]
    encoded = codec.encode(value)
    assert encoded.bulk is not None
    back = codec.decode(encoded.blob)
    assert np.array_equal(back[0], structured)
    assert back[0].flags.writeable
    assert np.array_equal(back[2], value[2])


def test_large_bytes_travel_in_the_block() -> None:
    # Two copies (into the block, out into the receiver's bytes) instead of
    # three through the socket (send, receive into the frame, copy out).
    value = [bytes([index]) * (600 * KIB) for index in range(4)]
    encoded = codec.encode(value)
    assert encoded.bulk is not None
    assert encoded.buffers == []
    back = codec.decode(encoded.blob)
    assert back == value
    assert all(type(item) is bytes for item in back)


def test_bytes_below_the_threshold_keep_the_frame() -> None:
    value = [b"a" * (600 * KIB)]
    encoded = codec.encode(value)
    assert encoded.bulk is None
    assert len(encoded.buffers) == 1
    assert codec.decode(encoded.blob) == value


def test_borrowed_blocks_take_no_reference_and_kept_ones_do() -> None:
    encoded = codec.encode(_arrays(4))
    ref = _block_ref(encoded)
    assert zero_copy.block_refcount(ref) == 1  # the sender's own
    borrowed: list[Any] = []
    lent = codec.decode(encoded.blob, borrowed=borrowed)
    assert zero_copy.block_refcount(ref) == 1
    assert len(borrowed) == 1
    assert zero_copy.ref_of(borrowed[0]).region == ref.region
    kept = codec.decode(encoded.blob, keep=True)
    assert zero_copy.block_refcount(ref) == 2  # one for every view of it
    last = kept[-1]
    del kept
    gc.collect()
    assert zero_copy.block_refcount(ref) == 2  # a view still lives
    del last
    assert zero_copy.block_refcount(ref) == 1
    del lent, borrowed
    ref.release()


def test_results_keep_the_frame_by_default() -> None:
    # Measured faster for results (see codec.BULK_RESULTS).
    encoded = codec.encode(_arrays(4), receiver=NOT_US, snapshot=False)
    assert encoded.bulk is None
    assert len(encoded.buffers) == 4


def test_results_carry_a_reference_that_the_receiver_adopts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "BULK_RESULTS", True)
    encoded = codec.encode(_arrays(4), receiver=NOT_US, snapshot=False)
    assert encoded.bulk is not None
    assert len(encoded.transfers) == 1
    ref = encoded.transfers[0]
    assert zero_copy.block_refcount(ref) == 2  # the sender's block + the transfer
    back = codec.decode(encoded.blob, keep=True)
    encoded.keepalive.clear()
    assert zero_copy.block_refcount(ref) == 1  # only the adopted one is left
    del back
    assert zero_copy.block_refcount(ref) == 0


def _forge(encoded: codec.Encoded, bulk: tuple[Any, ...]) -> tuple[Any, ...]:
    return (encoded.payload, (), bulk)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda b: (1, *b[1:]), "malformed bulk"),
        (lambda b: b[:5], "malformed bulk"),
        (lambda b: (*b[:5], b[5][:-1]), "spans"),
        (lambda b: (*b[:5], (0, b[4] + 1)), "beyond"),
        (lambda b: (*b[:5], (-64, 10)), "span"),
        (lambda b: (*b[:4], 0, b[5]), "bulk block of 0"),
        (lambda b: (b[0], b[1][:-4] + "dead", *b[2:]), "dead"),
        (lambda b: (*b[:5], b[5][:2]), "out-of-band"),  # fewer buffers than the pickle
    ],
)
def test_forged_bulk_descriptors_are_refused(change: Any, needle: str) -> None:
    encoded = codec.encode(_arrays(4))
    assert encoded.bulk is not None
    with pytest.raises(SerializationError, match=needle):
        codec.decode(_forge(encoded, change(encoded.bulk)))
    assert len(codec.decode(encoded.blob)) == 4  # the real one still opens


def test_a_malformed_blob_is_refused() -> None:
    with pytest.raises(SerializationError, match="malformed payload"):
        codec.decode((b"", (b"x",), ()))
