"""A worker's ``print`` output, labelled with the worker, whole lines at a time.

``sys.stdout`` and ``sys.stderr`` of a worker become writers that keep a
partial line until its newline (or the end of the call) and then write it,
prefixed with ``(worker N pid P)`` as Ray labels its workers' output, in one
``write`` to the inherited file descriptor, so lines from several workers
never interleave mid-line. Output that native code writes to the
descriptors directly is not labelled (it bypasses Python).
"""

from __future__ import annotations

import io
import os
import sys
import threading

__all__ = ["LabelledWriter", "flush_partial_lines", "install"]

#: A partial line longer than this is written without waiting for its newline.
_MAX_PENDING = 64 * 1024

_writers: list[LabelledWriter] = []


class LabelledWriter(io.TextIOBase):
    """A text stream writing prefixed whole lines to a file descriptor."""

    def __init__(self, fd: int, prefix: str, encoding: str | None) -> None:
        super().__init__()
        self._fd = fd
        self._prefix = prefix
        self._encoding = encoding or "utf-8"
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "backslashreplace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            data = self._pending + text
            head, newline, tail = data.rpartition("\n")
            self._pending = tail
            if newline:
                self._emit(head.split("\n"))
            if len(self._pending) > _MAX_PENDING:
                self._emit([self._pending])
                self._pending = ""
        return len(text)

    def flush(self) -> None:
        """Whole lines are written as they end; partial ones wait (see
        :func:`flush_partial_lines`)."""

    def end_partial_line(self) -> None:
        """Write a pending partial line, ended with a newline."""
        with self._lock:
            if self._pending:
                self._emit([self._pending])
                self._pending = ""

    def _emit(self, lines: list[str]) -> None:
        text = "".join(f"{self._prefix}{line}\n" for line in lines)
        data = text.encode(self._encoding, "backslashreplace")
        while data:
            try:
                written = os.write(self._fd, data)
            except InterruptedError:
                continue
            except OSError:
                return  # the descriptor is gone: output is best effort
            data = data[written:]


def install(worker_id: int) -> None:
    """Label this worker's ``sys.stdout`` and ``sys.stderr``."""
    prefix = f"(worker {worker_id} pid {os.getpid()}) "
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            fd = stream.fileno()
            stream.flush()
        except (AttributeError, OSError, ValueError):
            continue  # no descriptor to write to: leave it alone
        writer = LabelledWriter(fd, prefix, getattr(stream, "encoding", None))
        _writers.append(writer)
        setattr(sys, name, writer)


def flush_partial_lines() -> None:
    """End the partial lines a call left (at the end of each call)."""
    for writer in _writers:
        writer.end_partial_line()
