"""Frames and envelopes between supervisor and workers reject malformed input."""

from __future__ import annotations

import pickle
import socket
import struct
import sys
import threading
import tracemalloc
from typing import Any

import numpy as np
import psutil
import pytest

from snakepit._wire import protocol


def test_frames_round_trip_small_and_large(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    reader = protocol.FrameReader(right)
    small = _joined(protocol.pack(protocol.MSG_RESULT, 7, b"x"))
    large = _joined(protocol.pack(protocol.MSG_RESULT, 8, b"y" * (200 << 10)))
    protocol.send_frame(left, small)
    protocol.send_frame(left, small)
    assert _read(reader) == small  # two frames in one recv are split correctly
    assert _read(reader) == small
    sender = threading.Thread(target=protocol.send_frame, args=(left, large))
    sender.start()
    assert _read(reader) == large
    sender.join()
    left.close()
    assert reader.read() is None


def test_oversized_frame_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    left.sendall(struct.pack("<Q", protocol.MAX_FRAME_BYTES + 1))
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.FrameReader(right).read()


def test_truncated_frame_is_an_error(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    left.sendall(struct.pack("<Q", 100) + b"short")
    left.close()
    with pytest.raises(protocol.ProtocolError, match="middle of a frame"):
        protocol.FrameReader(right).read()


def _read(reader: protocol.FrameReader) -> bytes | None:
    payload = reader.read()
    return None if payload is None else bytes(payload)


def _joined(frame: protocol.Frame) -> bytes:
    return b"".join(bytes(part) for part in frame)


def _framed(envelope: bytes, *lengths: int) -> bytes:
    """A payload with this envelope and table (buffers follow, if any)."""
    table = struct.pack("<IQ", len(lengths), len(envelope))
    return table + b"".join(struct.pack("<Q", n) for n in lengths) + envelope


class _Exits:
    def __reduce__(self) -> tuple[Any, ...]:
        return (sys.exit, (7,))


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01\x00",
        _framed(b"not a pickle"),
        _framed(pickle.dumps(["call", 1, None])),
        _framed(pickle.dumps(("call", "1", None))),
        _framed(pickle.dumps(("call", 1))),
        _framed(pickle.dumps((1, 1, None))),
        _framed(pickle.dumps(("call", 1, _Exits()))),
        _framed(pickle.dumps(("call", 1, None)))[:-3],
        _framed(pickle.dumps(("call", 1, None))) + b"trailing",
        _framed(pickle.dumps(("call", 1, None)), 1 << 40),
        struct.pack("<IQ", 1 << 30, 0),
        # Compact frames cut short of their fields.
        struct.pack("<IQ", 0xFFFFFFFF, 7),
        struct.pack("<IQd", 0xFFFFFFFE, 7, 1.0),
        struct.pack("<IQ", 0xFFFFFFFD, 7),  # no such mark: read as a count
    ],
)
def test_malformed_envelopes_are_refused(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(payload)


def test_out_of_band_buffers_round_trip_aligned_and_in_place() -> None:
    blobs = [b"a" * 70_000, b"b" * 3, b"c" * (1 << 20) + b"d"]
    body = (pickle.PickleBuffer(blobs[0]), blobs[1], [pickle.PickleBuffer(blobs[2])])
    frame = protocol.pack(protocol.MSG_RESULT, 9, body)
    # The large blobs are sent as they are: never copied into the frame.
    assert any(isinstance(p, memoryview) and p.obj is blobs[0] for p in frame)
    payload = bytearray(_joined(frame))
    tag, ident, (first, small, (last,)) = protocol.unpack(payload)
    assert (tag, ident, small) == (protocol.MSG_RESULT, 9, b"bbb")
    assert isinstance(first, memoryview)
    assert first.obj is payload
    assert bytes(first) == blobs[0]
    assert bytes(last) == blobs[2]
    payload_address = np.frombuffer(payload, np.uint8).ctypes.data
    for view in (first, last):
        address = np.frombuffer(view, np.uint8).ctypes.data
        assert (address - payload_address) % 64 == 0


class _TrickleSocket:
    """A socket double whose sendmsg sends at most 1000 bytes per call."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.calls = 0

    def sendmsg(self, buffers: list[memoryview]) -> int:
        self.calls += 1
        room = 1000
        for buffer in buffers:
            taken = bytes(buffer[:room])
            self.received += taken
            room -= len(taken)
            if not room:
                break
        return 1000 - room

    def sendall(self, data: bytes) -> None:
        self.received += data


def test_partial_sends_resume_where_they_stopped() -> None:
    frame = protocol.pack(protocol.MSG_RESULT, 1, pickle.PickleBuffer(bytes(range(256)) * 500))
    sock = _TrickleSocket()
    protocol.send_frame(sock, frame)  # type: ignore[arg-type]
    expected = _joined(frame)
    assert sock.received == struct.pack("<Q", len(expected)) + expected
    assert sock.calls > 100


def test_announced_size_is_not_allocated_before_it_arrives(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A header announcing 1 GiB followed by 3 MiB costs memory for the 3 MiB."""
    left, right = pair

    def send() -> None:
        left.sendall(struct.pack("<Q", 1 << 30) + bytes(3 << 20))
        left.close()

    sender = threading.Thread(target=send)
    rss_before = psutil.Process().memory_info().rss
    reader = protocol.FrameReader(right)
    tracemalloc.start()
    try:
        sender.start()
        with pytest.raises(protocol.ProtocolError, match="middle of a frame"):
            reader.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sender.join()
    assert peak < 32 << 20
    assert psutil.Process().memory_info().rss - rss_before < 64 << 20


def test_envelope_round_trip() -> None:
    frame = protocol.pack(protocol.MSG_CALL, 3, (1, None, b""))
    assert protocol.unpack(_joined(frame)) == (
        protocol.MSG_CALL,
        3,
        (1, None, b""),
    )


def test_spinning_reader_still_blocks_and_sees_eof(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    reader = protocol.FrameReader(right, spin_seconds=0.001)
    frame = protocol.pack(protocol.MSG_READY, 1, None)
    protocol.send_frame(left, frame)
    assert _read(reader) == _joined(frame)
    left.close()
    assert reader.read() is None
    assert right.getblocking()


@pytest.mark.parametrize(
    "body",
    [(1, None, (b"args", ())), (b"x" * 70_000, 2.5, 3), (1, pickle.PickleBuffer(b"y" * 70_000))],
    ids=["call", "large-bytes", "stray-buffer"],
)
def test_an_inband_frame_unpacks_as_the_general_one(body: Any) -> None:
    inband = protocol.pack(protocol.MSG_CALL, 5, body, inband=True)
    general = protocol.pack(protocol.MSG_CALL, 5, body)
    assert len(inband) == 1  # one part: nothing beside the envelope
    tag, ident, got = protocol.unpack(_joined(inband))
    _, _, expected = protocol.unpack(_joined(general))
    # A PickleBuffer that was there anyway arrives copied into the envelope.
    plain = tuple(bytes(v) if isinstance(v, (memoryview, pickle.PickleBuffer)) else v for v in got)
    assert (tag, ident) == (protocol.MSG_CALL, 5)
    assert plain == tuple(bytes(v) if isinstance(v, memoryview) else v for v in expected)


@pytest.mark.parametrize("spin", [True, False])
@pytest.mark.parametrize("arguments", [b"", pickle.dumps(((1, "x"), {"k": 2.0}), protocol=5)])
def test_a_compact_call_unpacks_as_its_general_frame(spin: bool, arguments: bytes) -> None:
    body: tuple[Any, ...] = (2**40 + 3, None, (arguments, ()))
    if not spin:
        body += (None, None, False)
    general = protocol.unpack(_joined(protocol.pack(protocol.MSG_CALL, 2**62, body)))
    compact = protocol.unpack(_joined(protocol.pack_call(2**62, 2**40 + 3, arguments, spin)))
    assert compact == general
    assert type(compact[2][2][0]) is bytes


@pytest.mark.parametrize("cpu", [-1, 0, 63])
def test_a_compact_result_unpacks_as_its_general_frame(cpu: int) -> None:
    value = pickle.dumps(None, protocol=5)
    body = ((value, ()), 1.25e-6, cpu)
    general = protocol.unpack(_joined(protocol.pack(protocol.MSG_RESULT, 11, body)))
    compact = protocol.unpack(_joined(protocol.pack_result(11, value, 1.25e-6, cpu)))
    assert compact == general


def test_a_compact_frame_with_buffers_received_apart_is_refused() -> None:
    frame = _joined(protocol.pack_call(1, 2, b"args", True))
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(protocol.SplitFrame(memoryview(frame), {0: b"x"}, len(frame) + 1))
