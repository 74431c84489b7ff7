"""The compact frame of a call with flat arguments (``protocol.pack_flat_call``):
what it takes, that it unpacks as its general frame, and that a malformed
one is a ProtocolError or an envelope the codec then refuses."""

from __future__ import annotations

import pickle
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import snakepit
from snakepit._wire import _compact, codec, protocol
from snakepit.errors import SnakepitError


def _joined(frame: protocol.Frame) -> bytes:
    return b"".join(bytes(part) for part in frame)


def _arguments(holes: int) -> bytes:
    return pickle.dumps(((None,) * holes + (1.5, "x"), {"k": 2}), protocol=5)


@pytest.mark.parametrize("spin", [True, False])
@pytest.mark.parametrize(
    "slots",
    [
        ((0, b"p" * 90),),
        ((0, b""), (1, b"q")),
        ((3, b"a" * 70), (0, b"b" * 1200), (255, b"c" * 65535)),
        tuple((position, bytes([position]) * 40) for position in range(255)),
    ],
)
def test_a_compact_flat_call_unpacks_as_its_general_frame(
    spin: bool, slots: tuple[tuple[int, bytes], ...]
) -> None:
    arguments = _arguments(len(slots))
    blob = (arguments, (), None, slots)
    body: tuple[Any, ...] = (2**40 + 3, None, blob)
    if not spin:
        body += (None, None, False)
    general = protocol.unpack(_joined(protocol.pack(protocol.MSG_CALL, 2**62, body, inband=True)))
    frame = protocol.pack_flat_call(2**62, 2**40 + 3, arguments, slots, spin)
    assert frame is not None
    compact = protocol.unpack(_joined(frame))
    assert compact == general
    assert all(type(packed) is bytes for _, packed in compact[2][2][3])
    assert type(compact[2][2][0]) is bytes


@pytest.mark.parametrize(
    "slots",
    [
        (("key", b"p"),),  # a keyword
        ((0, b"p"), ("key", b"p")),
        ((0, "float32", (2,), b"\0" * 8),),  # a small array's copy
        ((256, b"p"),),
        tuple((0, b"p") for _ in range(256)),
        ((0, b"p" * 65536),),
    ],
)
def test_what_the_compact_flat_call_cannot_hold_takes_the_general_frame(
    slots: tuple[tuple[Any, ...], ...],
) -> None:
    assert protocol.pack_flat_call(1, 2, b"args", slots, True) is None


def _frame(arrays: int = 2) -> tuple[bytes, int]:
    """A compact flat call of one or two arrays, and where its pickle starts."""
    arguments = _arguments(arrays)
    slots = ((0, b"a" * 80), (1, b"b" * 3))[:arrays]
    frame = protocol.pack_flat_call(9, 4, arguments, slots, False)
    assert frame is not None
    joined = _joined(frame)
    return joined, len(joined) - len(arguments)


@pytest.mark.parametrize("arrays", [1, 2])
def test_every_cut_before_the_pickle_is_a_protocol_error(arrays: int) -> None:
    frame, pickle_start = _frame(arrays)
    for length in range(4, pickle_start):
        with pytest.raises(protocol.ProtocolError):
            protocol.unpack(frame[:length])


@pytest.mark.parametrize("arrays", [1, 2])
def test_every_cut_in_the_pickle_is_refused_by_the_codec(arrays: int) -> None:
    frame, pickle_start = _frame(arrays)
    for length in range(pickle_start, len(frame)):
        _, _, body = protocol.unpack(frame[:length])
        with pytest.raises(SnakepitError):
            codec.decode(body[2])


@pytest.mark.parametrize("count", [3, 200, 255])
def test_a_count_of_more_arrays_than_the_frame_holds_is_a_protocol_error(count: int) -> None:
    frame, _ = _frame()
    forged = frame[:21] + bytes([count]) + frame[22:]
    with pytest.raises(protocol.ProtocolError, match="compact flat call"):
        protocol.unpack(forged)


@pytest.mark.parametrize("arrays", [1, 2])
@pytest.mark.parametrize("length", [1 << 10, 1 << 12, 0xFFFF])
def test_an_array_longer_than_the_frame_is_a_protocol_error(arrays: int, length: int) -> None:
    frame, _ = _frame(arrays)
    forged = frame[:23] + struct.pack("<H", length) + frame[25:]
    with pytest.raises(protocol.ProtocolError, match="overrun"):
        protocol.unpack(forged)


@pytest.mark.parametrize("length", [79, 81, 83])
def test_an_array_of_another_length_within_the_frame_is_refused_by_the_codec(length: int) -> None:
    frame, _ = _frame()
    forged = frame[:23] + struct.pack("<H", length) + frame[25:]
    _, _, body = protocol.unpack(forged)
    with pytest.raises(SnakepitError):
        codec.decode(body[2])


def test_fewer_arrays_than_holes_leave_a_hole_the_codec_refuses() -> None:
    frame = protocol.pack_flat_call(1, 2, _arguments(2), ((0, b"a" * 10),), True)
    assert frame is not None
    _, _, body = protocol.unpack(_joined(frame))
    with pytest.raises(SnakepitError):
        codec.decode(body[2])


@settings(max_examples=300)
@given(fields=st.binary(max_size=200))
def test_random_fields_after_the_mark_are_a_protocol_error_or_an_envelope(fields: bytes) -> None:
    frame = struct.pack("<I", _compact.FLAT_CALL_MARK) + fields
    try:
        tag, _, body = protocol.unpack(frame)
    except protocol.ProtocolError:
        return
    assert tag == protocol.MSG_CALL
    try:
        codec.decode(body[2])
    except SnakepitError:
        return


def test_shared_arrays_by_position_travel_in_the_compact_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[bool] = []
    original = protocol.pack_flat_call

    def counting(*args: Any) -> protocol.Frame | None:
        frame = original(*args)
        made.append(frame is not None)
        return frame

    monkeypatch.setattr(protocol, "pack_flat_call", counting)
    first = snakepit.zeros(256, "float32")
    second = snakepit.empty((3, 4), "int64")
    first[:] = 1.0
    second[...] = np.arange(12).reshape(3, 4)
    with snakepit.Pool(workers=1, timeout=60) as pool:
        # The first call of each function sends it: the general frame.
        assert pool.call(np.sum, first) == 256.0
        assert pool.call(np.add, first[:12].reshape(3, 4), second).tolist() == [
            [1, 2, 3, 4],
            [5, 6, 7, 8],
            [9, 10, 11, 12],
        ]
        assert made == []
        assert pool.call(np.sum, first) == 256.0
        assert pool.call(np.add, first[:12].reshape(3, 4), second)[2, 3] == 12
        assert pool.call(np.sum, second, axis=1).tolist() == [6, 22, 38]  # a keyword scalar
        assert pool.call(np.sum, a=first) == 256.0  # a keyword array: not compact
    assert made == [True, True, True, False]
