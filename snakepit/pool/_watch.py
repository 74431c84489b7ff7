"""Notice a worker's death by its pid, not only by the end of its socket.

A worker's children inherit its socket, so a dead worker with a live
grandchild never closes the stream its reader waits on. One thread per pool
waits on a ``pidfd`` per worker (Linux 5.3+) and, when one exits, runs the
callback given for it (the pool kills the worker's process group and shuts
the socket, which wakes the reader). Where pidfds are missing, death is only
noticed by the socket, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import threading
from collections.abc import Callable


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in the group ``pgid`` (a worker leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(pgid, signal.SIGKILL)


class ProcessWatcher:
    """Calls ``on_exit()`` once the process ``pid`` has exited."""

    def __init__(self, name: str) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @staticmethod
    def supported() -> bool:
        return hasattr(os, "pidfd_open")

    def watch(self, pid: int, on_exit: Callable[[], None]) -> None:
        """Start watching ``pid``; does nothing where pidfds are unavailable."""
        if not self.supported():
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # already gone (its reader sees EOF) or no pidfd support
        with self._lock:
            if self._closed:
                os.close(pidfd)
                return
            self._selector.register(pidfd, selectors.EVENT_READ, on_exit)
        self._wake()

    def close(self) -> None:
        """Stop the thread and close every pidfd."""
        with self._lock:
            self._closed = True
        self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                for key, _ in self._selector.select():
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_read.recv(4096)
                        continue
                    with self._lock:
                        self._selector.unregister(key.fd)
                    os.close(key.fd)
                    try:
                        key.data()
                    except Exception:
                        logging.getLogger(__name__).exception("snakepit exit callback failed")
        finally:
            with self._lock:
                for key in list(self._selector.get_map().values()):
                    if key.data is not None:
                        with contextlib.suppress(OSError):
                            os.close(key.fd)
                self._selector.close()
            self._wake_read.close()
            self._wake_write.close()
