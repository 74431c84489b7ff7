"""Compact frames: the envelope of a round trip's frames as struct fields.

A call to a function the worker knows, with its arguments in one small
pickle (or a flat pickle beside shared arrays' packed fields), and a reply
of a small pickle, are what a round trip is made of. Their envelope is
struct fields instead of a pickle (whose set-up alone costs more than
packing the rest). A frame's table starts with its buffer count; a compact
frame has one of the marks below there instead, never a real count (a table
of that many lengths is larger than any frame), then its fields, then the
pickle. They unpack into the same envelopes as the general frames (see
``protocol``).

A result that is a float, or an int that fits in 64 bits, is a field of
its frame, not a pickle: the frame unpacks into the envelope with the
number itself where the value's blob goes (``codec.decode`` of a number is
that number). Numbers are the most common results after ``None``, and
building a pickler and an unpickler for eight bytes costs the two ends more
than the rest of the reply.

A flat call's fields end with its number of arrays; then come each array's
position (u8) and the length of its packed fields (u16), then the packed
fields one after another, then the pickle of the other arguments.
"""

from __future__ import annotations

import struct
from typing import Any

from ._messages import MSG_CALL, MSG_RESULT, ProtocolError

_Frame = list[bytes | memoryview]  # protocol.Frame

CALL_MARK, RESULT_MARK, FLAT_CALL_MARK = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
FLOAT_RESULT_MARK, INT_RESULT_MARK = 0xFFFFFFFC, 0xFFFFFFFB
#: No real buffer count reaches this; every mark is at least this.
LOWEST_MARK = INT_RESULT_MARK
_CALL = struct.Struct("<IQQ?")  # mark, call id, function id, spin
_RESULT = struct.Struct("<IQdq")  # mark, call id, python seconds, cpu
_FLOAT_RESULT = struct.Struct("<IQdqd")  # ..., then the value
_INT_RESULT = struct.Struct("<IQdqq")
_INT_LOWEST, _INT_HIGHEST = -(1 << 63), (1 << 63) - 1
_FLAT_CALL = struct.Struct("<IQQ?B")  # mark, call id, function id, spin, arrays
#: Most arrays, and positions, a compact flat call has (one byte each).
_MOST_POSITIONS = 256
_MOST_PACKED = 1 << 16
#: Each array's head: its position, the length of its packed fields.
_ARRAY_HEAD = 3
#: The heads of ``count`` arrays, by count, each made on first use (all 256
#: at import took milliseconds of every worker's start).
_HEADS: dict[int, struct.Struct] = {}


def _heads(count: int) -> struct.Struct:
    found = _HEADS.get(count)
    if found is None:  # count < _MOST_POSITIONS: a byte of the frame
        found = _HEADS[count] = struct.Struct("<" + "BH" * count)
    return found


#: The fields of a flat call of one array and that array's head.
_ONE_ARRAY = struct.Struct("<IQQ?BBH")


def pack_call(call_id: int, fn_id: int, arguments: bytes, spin: bool) -> _Frame:
    """The compact frame of ``(MSG_CALL, call_id, (fn_id, None, (arguments, ())))``
    (``spin`` False: ``(..., None, None, False)``): a call of a function the
    worker has, with arguments in one small pickle, no trace, no session."""
    return [_CALL.pack(CALL_MARK, call_id, fn_id, spin) + arguments]


def pack_flat_call(
    call_id: int, fn_id: int, arguments: bytes, slots: tuple[Any, ...], spin: bool
) -> _Frame | None:
    """The compact frame of ``(MSG_CALL, call_id, (fn_id, None, (arguments,
    (), None, slots)))`` (as :func:`pack_call`): flat arguments
    (``_flat.encode``) whose arrays are all shared and positional; None
    when they are not."""
    if len(slots) == 1:  # the common call: one array
        descriptor = slots[0]
        if (
            len(descriptor) == 2
            and type(descriptor[0]) is int
            and descriptor[0] < _MOST_POSITIONS
            and len(descriptor[1]) < _MOST_PACKED
        ):
            head = _ONE_ARRAY.pack(
                FLAT_CALL_MARK, call_id, fn_id, spin, 1, descriptor[0], len(descriptor[1])
            )
            return [head + descriptor[1] + arguments]
        return None
    if len(slots) >= _MOST_POSITIONS:
        return None
    heads: list[int] = []
    parts = [b"", b""]
    for descriptor in slots:
        if len(descriptor) != 2:
            return None  # a small array's copy: the general frame
        position, packed = descriptor
        if type(position) is not int or position >= _MOST_POSITIONS:
            return None  # a keyword
        if len(packed) >= _MOST_PACKED:
            return None
        heads += (position, len(packed))
        parts.append(packed)
    parts[0] = _FLAT_CALL.pack(FLAT_CALL_MARK, call_id, fn_id, spin, len(slots))
    parts[1] = _heads(len(slots)).pack(*heads)
    parts.append(arguments)
    return [b"".join(parts)]


def pack_result(call_id: int, value: bytes, python_seconds: float, cpu: int) -> _Frame:
    """The compact frame of ``(MSG_RESULT, call_id, ((value, ()), python_seconds, cpu))``."""
    return [_RESULT.pack(RESULT_MARK, call_id, python_seconds, cpu) + value]


def pack_number_result(
    call_id: int, value: float | int, python_seconds: float, cpu: int
) -> _Frame | None:
    """The compact frame of ``(MSG_RESULT, call_id, (value, python_seconds,
    cpu))`` for a ``float`` or an ``int`` (exactly those types) of 64 bits;
    None for any other value."""
    kind = type(value)
    if kind is float:
        return [_FLOAT_RESULT.pack(FLOAT_RESULT_MARK, call_id, python_seconds, cpu, value)]
    if kind is int and _INT_LOWEST <= value <= _INT_HIGHEST:
        return [_INT_RESULT.pack(INT_RESULT_MARK, call_id, python_seconds, cpu, value)]
    return None


def unpack(data: Any, mark: int) -> tuple[str, int, Any]:
    """The envelope of the compact frame ``data`` that starts with ``mark``;
    ProtocolError (or struct.error) when its fields disagree with its length."""
    # A small frame, copied once: its parts are then slices of bytes.
    data = bytes(data)
    if mark == CALL_MARK:
        _, call_id, fn_id, spin = _CALL.unpack_from(data)
        arguments: tuple[Any, ...] = (data[_CALL.size :], ())
    elif mark == FLAT_CALL_MARK:
        _, call_id, fn_id, spin, count = _FLAT_CALL.unpack_from(data)
        position = _FLAT_CALL.size + _ARRAY_HEAD * count
        if position > len(data):
            raise ProtocolError("a compact flat call is truncated in its arrays' heads")
        heads = _heads(count).unpack_from(data, _FLAT_CALL.size)
        if count == 1:  # the common call: one array
            end = position + heads[1]
            slots: tuple[tuple[int, bytes], ...] = ((heads[0], data[position:end]),)
            position = end
        else:
            found = []
            for index in range(0, 2 * count, 2):
                end = position + heads[index + 1]
                found.append((heads[index], data[position:end]))
                position = end
            slots = tuple(found)
        if position > len(data):
            raise ProtocolError("a compact flat call's arrays overrun the frame")
        arguments = (data[position:], (), None, slots)
    elif mark == RESULT_MARK:
        _, call_id, python_seconds, cpu = _RESULT.unpack_from(data)
        return MSG_RESULT, call_id, ((data[_RESULT.size :], ()), python_seconds, cpu)
    else:
        number = _FLOAT_RESULT if mark == FLOAT_RESULT_MARK else _INT_RESULT
        if len(data) != number.size:
            raise ProtocolError(f"a compact result of {len(data)} bytes, not {number.size}")
        _, call_id, python_seconds, cpu, value = number.unpack(data)
        return MSG_RESULT, call_id, (value, python_seconds, cpu)
    if spin:
        return MSG_CALL, call_id, (fn_id, None, arguments)
    return MSG_CALL, call_id, (fn_id, None, arguments, None, None, False)
