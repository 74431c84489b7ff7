"""Large ``bytes`` buffers of a frame are received into ``bytes`` of their own.

The frame reader receives a flagged buffer of ``_OWN_BYTES`` or more straight
into a new ``bytes`` object, and the codec hands that object out without a
copy; every other buffer still arrives in the frame's mapping. These tests
send real frames over a socketpair with the start of the buffer in the
frame's first read, leftovers of an earlier frame pending, several buffers
of every kind, truncations and lying tables.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psutil
import pytest

from snakepit import _core
from snakepit._wire import codec, protocol

OWN = protocol._OWN_BYTES


def _send_later(sock: socket.socket, frames: list[protocol.Frame]) -> threading.Thread:
    def send() -> None:
        for frame in frames:
            protocol.send_frame(sock, frame)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _result_frame(value: Any, ident: int = 1) -> protocol.Frame:
    return protocol.pack(protocol.MSG_RESULT, ident, codec.encode(value, receiver=os.getpid()).blob)


def _decoded(reader: protocol.FrameReader) -> tuple[Any, protocol.Payload]:
    payload = reader.read()
    assert payload is not None
    tag, _, blob = protocol.unpack(payload)
    assert tag == protocol.MSG_RESULT
    return codec.decode(blob, keep=True), payload


@pytest.mark.parametrize(
    ("size", "apart"),
    [
        (200 << 10, False),
        (OWN - 1, False),
        (OWN, True),
        (OWN + 1, True),
        (3 * OWN + 17, True),
        (40 * OWN, True),
    ],
)
def test_a_bytes_result_from_the_threshold_up_arrives_as_its_own_object(
    pair: tuple[socket.socket, socket.socket], size: int, apart: bool
) -> None:
    left, right = pair
    data = os.urandom(size)
    sender = _send_later(left, [_result_frame(data)])
    value, payload = _decoded(protocol.FrameReader(right))
    sender.join()
    assert type(value) is bytes
    assert value == data
    assert isinstance(payload, protocol.SplitFrame) is apart
    if apart:
        # The decoded value is the very object the reader filled: no copy.
        assert isinstance(payload, protocol.SplitFrame)
        assert value is payload.owned[0]


def test_every_kind_of_buffer_in_one_frame(pair: tuple[socket.socket, socket.socket]) -> None:
    """Bytes apart and in the frame, a bytearray and a memoryview of bytes
    (never flagged), in one result, after a small frame left bytes pending."""
    left, right = pair
    first, second = os.urandom(2 * OWN + 5), os.urandom(OWN + 3)
    value = {
        "first": first,
        "small": os.urandom(100 << 10),
        "mutable": bytearray(os.urandom(OWN + 9)),
        "view": memoryview(os.urandom(OWN + 11)),
        "second": second,
        "tail": b"t" * 10,
    }
    sender = _send_later(left, [_result_frame("before", 1), _result_frame(value, 2)])
    reader = protocol.FrameReader(right)
    before, _ = _decoded(reader)
    got, payload = _decoded(reader)
    sender.join()
    assert before == "before"
    assert isinstance(payload, protocol.SplitFrame)
    assert sorted(len(data) for data in payload.owned.values()) == [len(second), len(first)]
    assert got["first"] == first
    assert got["second"] == second
    assert got["small"] == value["small"]
    assert got["tail"] == value["tail"]
    assert type(got["mutable"]) is bytearray
    assert got["mutable"] == value["mutable"]
    assert bytes(got["view"]) == bytes(value["view"])


def test_arrays_beside_bytes_stay_writable_views(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    array = np.arange(OWN // 8 + 3, dtype=np.float64)
    data = os.urandom(OWN * 2)
    envelope = (pickle.PickleBuffer(data), pickle.PickleBuffer(array))
    sender = _send_later(left, [protocol.pack(protocol.MSG_RESULT, 3, envelope)])
    payload = protocol.FrameReader(right).read()
    sender.join()
    assert payload is not None
    _, _, (apart, in_frame) = protocol.unpack(payload)
    assert type(apart) is bytes
    assert apart == data
    assert isinstance(in_frame, memoryview)
    assert not in_frame.readonly
    assert np.array_equal(np.frombuffer(in_frame, np.float64), array)


def test_a_stream_that_ends_inside_the_buffer_is_an_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    whole = b"".join(bytes(part) for part in _result_frame(os.urandom(4 * OWN)))
    header = struct.pack("<Q", len(whole))

    def send() -> None:
        left.sendall(header + whole[: 2 * OWN])
        left.close()

    sender = threading.Thread(target=send)
    sender.start()
    reader = protocol.FrameReader(right)
    with pytest.raises(protocol.ProtocolError, match="middle of a frame"):
        reader.read()
    sender.join()
    assert not reader.intact


def _lying_frame(announced: int, envelope: bytes, *lengths: int) -> bytes:
    table = struct.pack("<IQ", len(lengths), len(envelope))
    table += b"".join(struct.pack("<Q", length) for length in lengths)
    return struct.pack("<Q", announced) + table + envelope


@pytest.mark.parametrize(
    "lengths",
    [
        (protocol._BYTES_FLAG | (8 * OWN),),  # beyond the frame
        (protocol._BYTES_FLAG | ((1 << 63) - 1),),  # absurd
        (protocol._BYTES_FLAG | OWN, protocol._BYTES_FLAG | (4 * OWN)),  # second too long
    ],
)
def test_a_table_that_lies_is_refused(
    pair: tuple[socket.socket, socket.socket], lengths: tuple[int, ...]
) -> None:
    left, right = pair
    envelope = pickle.dumps((protocol.MSG_RESULT, 1, None))
    announced = 2 * OWN
    start = _lying_frame(announced, envelope, *lengths)

    def send() -> None:
        left.sendall(start + bytes(announced + 8 - len(start)))

    sender = threading.Thread(target=send)
    sender.start()
    payload = protocol.FrameReader(right).read()
    sender.join()
    assert payload is not None
    assert not isinstance(payload, protocol.SplitFrame)
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(payload)


def test_an_announced_buffer_is_not_committed_before_it_arrives(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A table announcing a 1 GiB bytes buffer, then 3 MiB of it: memory for 3 MiB."""
    left, right = pair
    envelope = pickle.dumps((protocol.MSG_RESULT, 1, None))
    size = 1 << 30
    start = _lying_frame(size, envelope, protocol._BYTES_FLAG | (size - 64))

    def send() -> None:
        left.sendall(start + bytes(3 << 20))
        left.close()

    sender = threading.Thread(target=send)
    rss_before = psutil.Process().memory_info().rss
    sender.start()
    with pytest.raises(protocol.ProtocolError, match="middle of a frame"):
        protocol.FrameReader(right).read()
    sender.join()
    assert psutil.Process().memory_info().rss - rss_before < 64 << 20


@pytest.fixture
def alarm() -> Iterator[list[float]]:
    """SIGALRM records when it came (and raises once told to)."""
    seen: list[float] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(time.monotonic())
        if seen[0] < 0:
            raise TimeoutError("told to")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        yield seen
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _slow_frame(left: socket.socket, data: bytes) -> threading.Thread:
    whole = b"".join(bytes(part) for part in _result_frame(data))
    header = struct.pack("<Q", len(whole))

    def send() -> None:
        left.sendall(header + whole[: 2 * OWN])
        time.sleep(0.4)
        with contextlib.suppress(OSError):  # the reader may have given up
            left.sendall(whole[2 * OWN :])

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_signal_while_receiving_runs_its_handler_and_loses_nothing(
    pair: tuple[socket.socket, socket.socket], alarm: list[float]
) -> None:
    left, right = pair
    data = os.urandom(6 * OWN)
    sender = _slow_frame(left, data)
    signal.setitimer(signal.ITIMER_REAL, 0.15)
    value, _ = _decoded(protocol.FrameReader(right))
    sender.join()
    assert value == data
    assert len(alarm) == 1  # it ran while the rest of the buffer was awaited


def test_a_handler_that_raises_stops_the_receive(
    pair: tuple[socket.socket, socket.socket], alarm: list[float]
) -> None:
    left, right = pair
    alarm.append(-1.0)  # the handler raises
    sender = _slow_frame(left, os.urandom(6 * OWN))
    signal.setitimer(signal.ITIMER_REAL, 0.15)
    reader = protocol.FrameReader(right)
    with pytest.raises(TimeoutError, match="told to"):
        reader.read()
    assert not reader.intact
    right.close()  # the stream is lost: the sender's rest finds no reader
    sender.join()


@pytest.mark.parametrize(
    ("size", "prefix"), [(0, b""), (-1, b""), (3, b"four")], ids=["empty", "negative", "short"]
)
def test_recv_bytes_refuses_sizes_it_cannot_fill(
    pair: tuple[socket.socket, socket.socket], size: int, prefix: bytes
) -> None:
    with pytest.raises(ValueError, match="recv_bytes"):
        _core.recv_bytes(pair[1].fileno(), size, prefix)


def test_recv_bytes_raises_the_stream_error() -> None:
    read_end, write_end = os.pipe()  # not a socket
    try:
        with pytest.raises(_core.CoreError) as caught:
            _core.recv_bytes(read_end, 10, b"")
        assert caught.value.status == _core.Status.OS
        assert caught.value.os_errno == errno.ENOTSOCK
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_failing_stream_is_a_protocol_error(pair: tuple[socket.socket, socket.socket]) -> None:
    """The stream breaks while a buffer is awaited (here: its descriptor is
    swapped for one that is not a socket): the frame is lost, typed."""
    left, right = pair
    whole = b"".join(bytes(part) for part in _result_frame(os.urandom(4 * OWN)))
    left.sendall(struct.pack("<Q", len(whole)) + whole[: 64 << 10])
    reader = protocol.FrameReader(right)
    read_end, write_end = os.pipe()
    try:
        reader.sock = _NotASocket(right, read_end)  # type: ignore[assignment]
        with pytest.raises(protocol.ProtocolError, match="cannot receive"):
            reader.read()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert not reader.intact


class _NotASocket:
    """A test double: the real socket, but ``fileno`` names a pipe."""

    def __init__(self, sock: socket.socket, fd: int) -> None:
        self._sock, self._fd = sock, fd

    def fileno(self) -> int:
        return self._fd

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
