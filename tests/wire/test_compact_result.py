"""A result that is a number travels as a field of its frame
(``protocol.pack_number_result``): which values take it, that it unpacks as
a reply whose blob the codec gives back as it is, and that a malformed one
is a ProtocolError."""

from __future__ import annotations

import enum
import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snakepit._wire import _compact, codec, protocol


def _joined(frame: protocol.Frame) -> bytes:
    return b"".join(bytes(part) for part in frame)


class _Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "value",
    [0, 1, -1, 2**63 - 1, -(2**63), 0.0, -0.0, 1.5, 5e-324, 1e308, math.inf, -math.inf],
)
def test_a_number_result_unpacks_as_the_number(value: float | int) -> None:
    frame = protocol.pack_number_result(2**62 + 5, value, 0.25, 7)
    assert frame is not None
    tag, ident, (blob, python_seconds, cpu) = protocol.unpack(_joined(frame))
    assert (tag, ident, python_seconds, cpu) == (protocol.MSG_RESULT, 2**62 + 5, 0.25, 7)
    back = codec.decode(blob, keep=True)
    assert type(back) is type(value)
    assert back == value
    assert math.copysign(1, back) == math.copysign(1, value)


def test_a_nan_result_is_a_nan() -> None:
    frame = protocol.pack_number_result(1, math.nan, 0.0, -1)
    assert frame is not None
    assert math.isnan(codec.decode(protocol.unpack(_joined(frame))[2][0]))


@pytest.mark.parametrize(
    "value",
    [2**63, -(2**63) - 1, 2**200, True, False, None, 1j, "1", b"1", _Level.HIGH, np.float64(1.5)],
)
def test_other_values_take_the_pickled_result(value: Any) -> None:
    # Only exactly float and int of 64 bits: a bool, an IntEnum or numpy's
    # float64 (a float subclass) must come back as its own type.
    assert protocol.pack_number_result(1, value, 0.0, 0) is None


@given(st.one_of(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1)))
def test_every_64_bit_number_round_trips(value: float | int) -> None:
    frame = protocol.pack_number_result(3, value, 1.0, 0)
    assert frame is not None
    back = codec.decode(protocol.unpack(_joined(frame))[2][0])
    assert type(back) is type(value)
    assert back == value


@pytest.mark.parametrize("value", [1.5, 7])
def test_a_cut_or_extended_number_result_is_a_protocol_error(value: float | int) -> None:
    frame = _joined(protocol.pack_number_result(1, value, 0.0, 0) or [])
    for end in range(4, len(frame)):
        with pytest.raises((protocol.ProtocolError, struct.error)):
            _compact.unpack(frame[:end], struct.unpack_from("<I", frame)[0])
        with pytest.raises(protocol.ProtocolError):
            protocol.unpack(frame[:end])
    with pytest.raises(protocol.ProtocolError, match="compact result"):
        protocol.unpack(frame + b"\0")


def test_the_number_marks_are_above_every_real_buffer_count() -> None:
    marks = {_compact.FLOAT_RESULT_MARK, _compact.INT_RESULT_MARK}
    assert min(marks) == _compact.LOWEST_MARK
    assert len(marks | {_compact.CALL_MARK, _compact.RESULT_MARK, _compact.FLAT_CALL_MARK}) == 5
