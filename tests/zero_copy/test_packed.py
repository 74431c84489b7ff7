"""Packed block fields: what the flat codec carries for each shared array.

Both ends cache (the sender per array, the receiver per packed bytes), so
these tests check that a cached answer is always the answer a fresh look
would give, and that bytes from another process are checked whatever they
hold.
"""

from __future__ import annotations

import gc
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snakepit
from snakepit.errors import DtypeError, InvalidDescriptorError, SnakepitError
from snakepit.zero_copy import _mapping, _packed
from snakepit.zero_copy._ref import fields_of


@pytest.fixture
def block() -> np.ndarray[Any, Any]:
    array = snakepit.empty((6, 8), "float64")
    array[...] = np.arange(48).reshape(6, 8)
    return array


def _views(block: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    return [
        block,
        block[2],
        block[:, 3],
        block[1:5:2, ::-3],
        block.T,
        block[0, 0, ...],
        block[3:3],
        block.reshape(2, 3, 2, 4),
        block.view("uint8")[5:77],
        block.view("complex128"),
    ]


def test_every_view_comes_back_as_the_same_memory(block: np.ndarray[Any, Any]) -> None:
    for view in _views(block):
        packed = _packed.packed_of(view)
        assert packed == _packed.pack(fields_of(view))  # type: ignore[arg-type]
        assert _packed.unpack(packed) == fields_of(view)
        back = _packed.array_from_packed(packed, "borrow")
        assert back.dtype == view.dtype
        assert back.shape == view.shape
        assert back.strides == view.strides
        np.testing.assert_array_equal(back, view)
        if view.size:
            # The same memory, not a copy: a write through one shows in the other.
            before = view.flat[0].copy()
            back.flat[0] = before + 1
            assert view.flat[0] == before + 1
            view.flat[0] = before


def test_arrays_outside_shared_memory_have_no_packed_fields() -> None:
    assert _packed.packed_of(np.zeros(4)) is None
    assert _packed.packed_of(np.zeros(4)[::2]) is None


def test_a_dtype_that_cannot_be_shared_is_a_dtype_error(block: np.ndarray[Any, Any]) -> None:
    with pytest.raises(DtypeError):
        _packed.packed_of(block.view(">i4"))


def test_a_shape_or_dtype_changed_in_place_is_packed_afresh() -> None:
    array = snakepit.zeros(12, "float32")
    first = _packed.packed_of(array)
    array.shape = (3, 4)
    reshaped = _packed.packed_of(array)
    array.dtype = np.dtype("int32")
    retyped = _packed.packed_of(array)
    assert len({first, reshaped, retyped}) == 3
    assert _packed.unpack(reshaped)[6:] == ((3, 4), (16, 4))
    assert _packed.unpack(retyped)[5] == fields_of(array)[5]  # type: ignore[index]


def test_a_reused_id_never_gets_another_arrays_fields() -> None:
    seen: dict[int, bytes] = {}
    reused = 0
    for length in range(1, 200):
        array = snakepit.zeros(length, "uint8")
        packed = _packed.packed_of(array)
        assert packed == _packed.pack(fields_of(array))  # type: ignore[arg-type]
        if id(array) in seen:
            reused += 1
            assert seen[id(array)] != packed
        seen[id(array)] = packed
        del array
        gc.collect()
    # Without a reused id the test checks nothing; CPython reuses freed slots.
    assert reused > 0


def test_a_region_unlinked_for_its_dead_owner_is_no_longer_sent(
    block: np.ndarray[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _packed.packed_of(block) is not None
    region = fields_of(block)[0]  # type: ignore[index]
    monkeypatch.setattr(_mapping.state, "unlinked", {region})
    assert _packed.packed_of(block) is None
    monkeypatch.setattr(_mapping.state, "unlinked", set())
    assert _packed.packed_of(block) is not None


def test_every_truncation_and_extension_is_refused(block: np.ndarray[Any, Any]) -> None:
    packed = _packed.packed_of(block[1:4, ::2])
    assert packed is not None
    for length in range(len(packed)):
        with pytest.raises(InvalidDescriptorError):
            _packed.unpack(packed[:length])
    for tail in (b"\0", b"\0" * 8, packed):
        with pytest.raises(InvalidDescriptorError, match="disagrees with its lengths"):
            _packed.unpack(packed + tail)


@pytest.mark.parametrize("data", [None, 7, "abc", bytearray(64), memoryview(b"\0" * 64), (1,)])
def test_only_bytes_are_packed_fields(data: object) -> None:
    with pytest.raises(InvalidDescriptorError, match="is bytes, not"):
        _packed.unpack(data)
    for mode in ("borrow", "acquire"):
        with pytest.raises(InvalidDescriptorError, match="is bytes, not"):
            _packed.array_from_packed(data, mode)  # type: ignore[arg-type]


def _forged(block: np.ndarray[Any, Any], **changes: Any) -> bytes:
    region, region_size, offset, nbytes, byte_offset, dtype, shape, strides = fields_of(block)  # type: ignore[misc]
    fields: dict[str, Any] = dict(
        region=region.encode(),
        region_size=region_size,
        offset=offset,
        nbytes=nbytes,
        byte_offset=byte_offset,
        dtype=dtype.encode(),
        shape=shape,
        strides=strides,
    )
    fields.update(changes)
    ndim = fields.pop("ndim", len(fields["shape"]))
    head = struct.pack(
        "<QQQQBBH",
        fields["region_size"],
        fields["offset"],
        fields["nbytes"],
        fields["byte_offset"],
        ndim,
        len(fields["dtype"]),
        len(fields["region"]),
    )
    dims = struct.pack(f"<{2 * len(fields['shape'])}q", *fields["shape"], *fields["strides"])
    return head + fields["region"] + fields["dtype"] + dims


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"region": "/snakepit-1-é0123456789abcde".encode()}, "region"),
        ({"region": b"/snakepit-1-\xff\xfe"}, "not text"),
        ({"dtype": "f\u00e98".encode()}, "not text"),
        ({"dtype": b"object"}, "dtype"),
        ({"dtype": b"<f16x"}, "dtype"),
        ({"shape": (7, 8)}, "over a block"),
        ({"shape": (-1, 8)}, "must hold ints"),
        ({"strides": (8 << 40, 8)}, "view spans"),
        ({"strides": (-64, 8)}, "view spans"),
        ({"byte_offset": 1 << 40}, "view spans"),
        ({"nbytes": 1 << 60}, "outside the region"),
        ({"region_size": 0}, "must not be 0"),
        ({"ndim": 65, "shape": (1,) * 65, "strides": (0,) * 65}, "lengths"),
        ({"ndim": 3}, "lengths"),
        ({"ndim": 1}, "lengths"),
    ],
)
def test_forged_fields_are_refused(
    block: np.ndarray[Any, Any], changes: dict[str, Any], message: str
) -> None:
    forged = _forged(block, **changes)
    with pytest.raises(InvalidDescriptorError, match=message):
        _packed.array_from_packed(forged, "borrow")


def test_the_forging_helper_makes_what_pack_makes(block: np.ndarray[Any, Any]) -> None:
    assert _forged(block) == _packed.packed_of(block)


def test_the_receivers_cache_is_bounded(
    block: np.ndarray[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_packed, "_received", {})
    monkeypatch.setattr(_packed, "_MOST_CACHED", 3)
    for view in _views(block):
        packed = _packed.packed_of(view)
        assert packed is not None
        assert _packed.unpack(packed) == fields_of(view)
        assert 0 < len(_packed._received) <= 3


def test_a_cached_receipt_is_the_checked_fields(block: np.ndarray[Any, Any]) -> None:
    packed = _packed.packed_of(block)
    assert packed is not None
    first = _packed.unpack(packed)
    # Equal bytes built afresh (not the same object) find the same entry.
    assert _packed.unpack(bytes(bytearray(packed))) is first


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=160))
def test_random_bytes_are_refused_or_checked(block: np.ndarray[Any, Any], data: bytes) -> None:
    _refused_or_valid(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_one_changed_byte_is_refused_or_checked(
    block: np.ndarray[Any, Any], position: int, value: int
) -> None:
    packed = bytearray(_packed.packed_of(block[1:, ::2]) or b"")
    packed[position % len(packed)] = value
    _refused_or_valid(bytes(packed))


def _refused_or_valid(data: bytes) -> None:
    try:
        array = _packed.array_from_packed(data, "borrow")
    except SnakepitError:
        # Malformed, or well-formed fields of a region that does not exist.
        return
    nbytes, byte_offset = _packed.unpack(data)[3:5]
    assert byte_offset + array.nbytes <= nbytes or array.size == 0
