"""One thread per pool that notices what nobody else waits for.

* **A worker's death by its pid**, not only by the end of its socket: a
  worker's children inherit its socket, so a dead worker with a live
  grandchild never closes the stream its reader waits on. The thread waits
  on a ``pidfd`` per worker (Linux 5.3+) and, when one exits, runs the
  callback given for it (the pool kills the worker's process group and
  shuts the socket, which wakes whoever reads it). Where pidfds are
  missing, death is only noticed by the socket, as before.
* **An idle worker's socket** (see ``_direct.py``): while a worker has no
  call, its reader thread sleeps without reading, so that the next caller
  can read its own reply; a socket armed here runs its callback once when
  it turns readable (a log line, an event, the end of the stream), and the
  callback hands the stream back to the reader thread.

Built on ``select.epoll`` directly: arming and disarming a socket is one
``epoll_ctl`` each, with no wake-up of this thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable

__all__ = ["ProcessWatcher", "kill_group"]

_ONCE = select.EPOLLIN | select.EPOLLONESHOT if hasattr(select, "epoll") else 0
#: Worker deaths are watched by pid (and idle sockets can be).
_SUPPORTED = hasattr(os, "pidfd_open") and hasattr(select, "epoll")


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in the group ``pgid`` (a worker leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(pgid, signal.SIGKILL)


class ProcessWatcher:
    """Calls ``on_exit()`` once the process ``pid`` has exited, and
    ``on_readable()`` once an armed socket has something to read."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._exits: dict[int, Callable[[], None]] = {}  # pidfd -> on_exit
        self._sockets: dict[int, Callable[[], None]] = {}  # registered fd -> on_readable
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._thread: threading.Thread | None = None
        if self._epoll is not None:
            self._epoll.register(self._wake_read.fileno(), select.EPOLLIN)
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    @staticmethod
    def supported() -> bool:
        """Whether worker deaths are watched by pid (and idle sockets can be)."""
        return _SUPPORTED

    def watch(self, pid: int, on_exit: Callable[[], None]) -> None:
        """Start watching ``pid``; does nothing where pidfds are unavailable."""
        if not self.supported() or self._epoll is None:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # already gone (its reader sees EOF) or no pidfd support
        with self._lock:
            if self._closed:
                os.close(pidfd)
                return
            self._exits[pidfd] = on_exit
            self._epoll.register(pidfd, select.EPOLLIN)

    def arm(self, fd: int, on_readable: Callable[[], None]) -> bool:
        """Run ``on_readable()`` once, when ``fd`` next has something to read
        (at once if it has now); False when that cannot be watched here."""
        epoll = self._epoll
        if not _SUPPORTED or epoll is None:
            return False
        with self._lock:
            if self._closed:
                return False
            try:
                if fd in self._sockets:
                    try:
                        epoll.modify(fd, _ONCE)
                    except FileNotFoundError:  # closed unforgotten: a new socket
                        epoll.register(fd, _ONCE)
                else:
                    epoll.register(fd, _ONCE)
            except OSError:
                return False
            self._sockets[fd] = on_readable
        return True

    def disarm(self, fd: int) -> None:
        """Cancel an :meth:`arm` that has not fired (it may still fire meanwhile)."""
        epoll = self._epoll
        with self._lock:
            if fd in self._sockets and epoll is not None and not self._closed:
                try:  # noqa: SIM105 (contextlib.suppress: three more calls on every call)
                    epoll.modify(fd, 0)
                except OSError:
                    pass

    def forget(self, fd: int) -> None:
        """Stop knowing ``fd``; call before the socket is closed (its number is reused)."""
        with self._lock:
            if self._sockets.pop(fd, None) is not None and self._epoll is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)

    def close(self) -> None:
        """Stop the thread and close every pidfd."""
        with self._lock:
            self._closed = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        elif thread is None:
            self._release()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _run(self) -> None:
        assert self._epoll is not None
        wake = self._wake_read.fileno()
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                try:
                    ready = self._epoll.poll()
                except InterruptedError:  # pragma: no cover - retried by Python
                    continue
                for fd, _ in ready:
                    if fd == wake:
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(4096)
                        continue
                    with self._lock:
                        on_exit = self._exits.pop(fd, None)
                        callback = on_exit or self._sockets.get(fd)
                        if on_exit is not None:
                            self._epoll.unregister(fd)
                            os.close(fd)
                    if callback is None:
                        continue
                    try:
                        callback()
                    except Exception:
                        logging.getLogger(__name__).exception("snakepit watch callback failed")
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            for pidfd in self._exits:
                with contextlib.suppress(OSError):
                    os.close(pidfd)
            self._exits.clear()
            self._sockets.clear()
            if self._epoll is not None:
                self._epoll.close()
        self._wake_read.close()
        self._wake_write.close()
