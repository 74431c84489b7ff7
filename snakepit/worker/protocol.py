"""The one protocol between the supervisor and its workers.

Frames on a private ``socketpair`` (no listening port): an 8-byte
little-endian length, then a payload produced by :mod:`snakepit.worker.codec`.
Every message is a tuple whose first item is one of the ``MSG_*`` tags below.

Supervisor → worker:
  ``(MSG_INIT, config: dict)``                first message after start
  ``(MSG_CALL, call_id, fn_id, fn_blob | None, args_blob)``: the function and
  the ``(args, kwargs)`` pair are encoded separately, so a call whose
  arguments fail to decode still has an id to answer to
  ``(MSG_SHUTDOWN,)``
Worker → supervisor:
  ``(MSG_READY, pid)``                        initializer done
  ``(MSG_INIT_FAILED, error_record)``         initializer raised
  ``(MSG_RESULT, call_id, value)``
  ``(MSG_ERROR, call_id, error_record)``
"""

from __future__ import annotations

import socket
import struct

MSG_INIT = "init"
MSG_READY = "ready"
MSG_INIT_FAILED = "init_failed"
MSG_CALL = "call"
MSG_RESULT = "result"
MSG_ERROR = "error"
MSG_SHUTDOWN = "shutdown"

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


def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            return None
        received += count
    return buffer


def recv_frame(sock: socket.socket) -> bytearray | None:
    """Receive one frame; None when the peer closed the connection."""
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES} limit")
    payload = _recv_exact(sock, size)
    if payload is None:
        raise ProtocolError("connection closed in the middle of a frame")
    return payload
