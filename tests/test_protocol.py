"""Frames and envelopes between supervisor and workers reject malformed input."""

from __future__ import annotations

import pickle
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from snakepit.worker import protocol


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    try:
        yield left, right
    finally:
        left.close()
        right.close()


def test_frames_round_trip_small_and_large(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    reader = protocol.FrameReader(right)
    small = protocol.pack(protocol.MSG_RESULT, 7, b"x")
    large = protocol.pack(protocol.MSG_RESULT, 8, b"y" * (200 << 10))
    protocol.send_frame(left, small)
    protocol.send_frame(left, small)
    assert reader.read() == small  # two frames in one recv are split correctly
    assert reader.read() == small
    sender = threading.Thread(target=protocol.send_frame, args=(left, large))
    sender.start()
    assert reader.read() == large
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


@pytest.mark.parametrize(
    "payload",
    [
        b"not a pickle",
        pickle.dumps(["call", 1, None]),
        pickle.dumps(("call", "1", None)),
        pickle.dumps(("call", 1)),
        pickle.dumps((1, 1, None)),
    ],
)
def test_malformed_envelopes_are_refused(payload: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(payload)


def test_envelope_round_trip() -> None:
    assert protocol.unpack(protocol.pack(protocol.MSG_CALL, 3, (1, None, b""))) == (
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
    assert reader.read() == frame
    left.close()
    assert reader.read() is None
    assert right.getblocking()
