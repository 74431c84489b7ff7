"""A file over a received frame for the unpickler, read in place."""

from __future__ import annotations

from typing import Any

#: Payloads from this size up are unpickled through ViewReader.
VIEW_READER_BYTES = 1 << 20


class ViewReader:
    """A read-only file over a buffer, for the unpickler, without copying it.

    The unpickler reads small pieces with ``read`` and fills large objects
    (bytes, arrays) with ``readinto``, so their bytes are copied once, from
    the frame into the object.
    """

    __slots__ = ("_position", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        start = self._position
        stop = len(self._view) if size < 0 else min(len(self._view), start + size)
        self._position = stop
        return bytes(self._view[start:stop])

    def readinto(self, target: Any) -> int:
        destination = memoryview(target).cast("B")
        start = self._position
        count = min(len(destination), len(self._view) - start)
        destination[:count] = self._view[start : start + count]
        self._position = start + count
        return count

    def readline(self) -> bytes:
        start = self._position
        view = self._view
        end = start
        while end < len(view) and view[end] != 0x0A:
            end += 1
        self._position = min(end + 1, len(view))
        return bytes(view[start : self._position])
