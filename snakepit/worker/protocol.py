"""The one protocol between the supervisor and its workers.

Frames on a private ``socketpair`` (no listening port): an 8-byte
little-endian length, then a small envelope ``(tag, ident, blob)`` pickled with
plain pickle. ``blob`` is a payload of :mod:`snakepit.worker.codec` (or None),
decoded separately, so a payload that fails to decode still has an ``ident``
to answer to and never costs the connection.

Supervisor → worker:
  ``(MSG_INIT, slot, (config_blob, ledger_ref))``  first frame after start
  ``(MSG_CALL, call_id, (fn_id, fn_blob | None, args_blob))``
  ``(MSG_SHUTDOWN, 0, None)``
Worker → supervisor:
  ``(MSG_READY, pid, None)``                      initializer done
  ``(MSG_INIT_FAILED, pid, error_record_blob)``   initializer raised
  ``(MSG_RESULT, call_id, (value_blob, python_seconds))``
  ``(MSG_ERROR, call_id, (error_record_blob, python_seconds))``
  ``(MSG_EVENT, 0, (event, measurements, metadata))`` telemetry raised in the
  worker, plain values only (forwarded to the supervisor's event bus)

``python_seconds`` is the time the worker spent in the called function.
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from typing import Any

MSG_INIT = "init"
MSG_READY = "ready"
MSG_INIT_FAILED = "init_failed"
MSG_CALL = "call"
MSG_RESULT = "result"
MSG_ERROR = "error"
MSG_SHUTDOWN = "shutdown"
MSG_EVENT = "event"

_HEADER = struct.Struct("<Q")
#: A frame larger than this is refused: big data travels through shared
#: memory, so a huge frame means a bug or a hostile peer.
MAX_FRAME_BYTES = 1 << 31

#: Exit code a worker uses when its initializer raised.
EXIT_INIT_FAILED = 3


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame (blocking)."""
    sock.sendall(_HEADER.pack(len(payload)) + payload)


class FrameReader:
    """Reads frames from a socket with as few ``recv`` calls as possible."""

    def __init__(self, sock: socket.socket, spin_seconds: float = 0.0) -> None:
        self.sock = sock
        self.spin_seconds = spin_seconds
        self.buffer = bytearray()
        self._chunk = bytearray(1 << 16)
        self._chunk_view = memoryview(self._chunk)

    def read(self) -> bytearray | None:
        """The next frame's payload; None when the peer closed the connection."""
        buffer = self.buffer
        while True:
            if len(buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer)
                if size > MAX_FRAME_BYTES:
                    raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
                end = _HEADER.size + size
                if len(buffer) >= end:
                    payload = buffer[_HEADER.size : end]
                    del buffer[:end]
                    return payload
                want = end - len(buffer)
            else:
                want = _HEADER.size - len(buffer)
            if want > len(self._chunk):
                # A big frame: read the rest straight into place.
                start = len(buffer)
                buffer.extend(bytes(want))
                count = self.sock.recv_into(memoryview(buffer)[start:], want)
                del buffer[start + count :]
            else:
                count = self._spin_recv() if self.spin_seconds and not buffer else -1
                if count < 0:
                    count = self.sock.recv_into(self._chunk_view)
                buffer += self._chunk_view[:count]
            if count == 0:
                if buffer:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None

    def _spin_recv(self) -> int:
        """Poll for the next frame for a moment before sleeping in ``recv``.

        Waking a blocked process costs tens of microseconds; a worker that
        polls briefly after answering catches the next call of a busy caller
        at once. Returns -1 if nothing came within ``spin_seconds``.
        """
        sock = self.sock
        deadline = time.perf_counter() + self.spin_seconds
        sock.setblocking(False)
        try:
            while True:
                try:
                    return sock.recv_into(self._chunk_view)
                except BlockingIOError:
                    if time.perf_counter() >= deadline:
                        return -1
        finally:
            sock.setblocking(True)


def pack(tag: str, ident: int, blob: Any) -> bytes:
    """The envelope of one frame."""
    return pickle.dumps((tag, ident, blob), protocol=5)


def unpack(payload: bytes | bytearray) -> tuple[str, int, Any]:
    """Open an envelope, checking its shape; ProtocolError if malformed."""
    try:
        envelope = pickle.loads(payload)
    except Exception as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from exc
    if (
        type(envelope) is not tuple
        or len(envelope) != 3
        or type(envelope[0]) is not str
        or type(envelope[1]) is not int
    ):
        raise ProtocolError(f"malformed envelope {type(envelope).__name__}")
    return envelope
