"""Forking this process as a pool's worker template (``Pool(template="supervisor")``).

:func:`fork_when_safe` forks only while nothing but the calling thread runs
and no GPU driver is loaded (:func:`fork_blocker`), and checks after the
fork that no thread ran through it. The copy becomes a template in
:func:`snakepit.worker._zygote.run_forked`; :class:`ForkedTemplate` is the
supervisor's handle on it (its parent: it reaps it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from snakepit._util import thread_count
from snakepit.telemetry import _bus
from snakepit.worker import _blas

__all__ = ["ForkedTemplate", "fork_blocker", "fork_when_safe"]


class ForkedTemplate:
    """A template forked from this process: the part of ``Popen`` a template needs.

    This process is its parent, so its pid cannot be recycled until it is
    reaped here.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """Its exit code once it has exited (reaping it), else None."""
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped by someone else's waitpid(-1)
                    self.returncode = -signal.SIGKILL
                else:
                    if pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code, once it exits (raises ``subprocess.TimeoutExpired``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"snakepit template {self.pid}", timeout or 0.0)
            time.sleep(0.002)
        return code

    def kill(self) -> None:
        """SIGKILL, unless it has been reaped."""
        with self._lock:
            if self.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)


def fork_blocker() -> str | None:
    """Why this process cannot be forked as a template now; None: it can.

    Forking copies only the calling thread: a lock another thread held stays
    held in the copy. Two kinds are the exception: OpenBLAS's threads (its
    pre-fork handler stops them; :func:`fork_when_safe` checks they did) and
    snakepit's deferred telemetry thread (held between events while this
    process forks). A copy of a process that loaded a GPU driver cannot use
    the GPU.
    """
    ours = _ours()
    python_threads = threading.active_count()
    if python_threads > 1 + ours:
        return f"{python_threads - ours} Python threads run here"
    blas = _blas.openblas_threads() or 1
    native = thread_count()
    if native > blas + ours:
        return f"{native - ours} threads run here"
    try:
        with open("/proc/self/maps") as maps:
            driver = next((line.split()[-1] for line in maps if _GPU_DRIVER in line), None)
    except OSError:
        driver = None
    if driver is not None:
        return f"this process has loaded the GPU driver ({os.path.basename(driver)})"
    return None


_GPU_DRIVER = "libcuda.so"
#: Forks of this process tried before its template is a fresh interpreter,
#: and seconds waited between them for ending threads to be gone.
_FORK_ATTEMPTS = 2
_THREADS_GRACE = 0.1
#: Seconds a fork waits for the deferred telemetry thread to finish an event.
_TELEMETRY_GRACE = 1.0


def _ours() -> int:
    """Threads of snakepit's own that a fork may run through: the deferred telemetry one."""
    return 1 if _bus.deferred_thread_alive() else 0


def _wait_for_threads_to_end(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while thread_count() > 1 + _ours() and time.monotonic() < deadline:
        time.sleep(0.002)


def fork_when_safe(
    env: Mapping[str, str], preload: Sequence[str]
) -> tuple[ForkedTemplate, socket.socket] | str:
    """Fork this process as a template: it and the supervisor's end of its
    socket, or why not (:func:`fork_blocker`, or a thread seen at the fork)."""
    for attempt in range(_FORK_ATTEMPTS):
        if attempt:
            # A thread that was ending as we forked (a pool's that was just
            # joined still has to leave the kernel): once it is gone, again.
            _wait_for_threads_to_end(_THREADS_GRACE)
        reason = fork_blocker()
        if reason is not None:
            return reason
        forked = _fork(env, preload)
        if not isinstance(forked, str):
            return forked
    return forked


def _fork(
    env: Mapping[str, str], preload: Sequence[str]
) -> tuple[ForkedTemplate, socket.socket] | str:
    # Imported here, once: the fork then has what a template runs.
    from snakepit.worker import _zygote as template_main

    supervisor = os.getpid()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent.settimeout(None)
    for stream in (sys.stdout, sys.stderr):
        # Whatever is buffered would come out once more from the copy.
        with contextlib.suppress(Exception):
            stream.flush()
    with _bus.held_idle(_TELEMETRY_GRACE) as idle:
        if not idle:
            parent.close()
            child.close()
            return "a telemetry handler has not returned for a second"
        try:
            pid = os.fork()
        except OSError as exc:
            parent.close()
            child.close()
            return f"fork failed: {exc}"
        if pid == 0:
            try:
                template_main.run_forked(child.fileno(), supervisor, list(preload), env)
            finally:
                os._exit(1)
    child.close()
    template = ForkedTemplate(pid)
    threads = thread_count()
    if threads > 1 + _ours():
        # A thread that ran through the fork (started as it happened, or
        # not stopped by its library's pre-fork handler): not a safe copy.
        template.kill()
        template.wait()
        parent.close()
        return f"{threads - 1 - _ours()} other threads ran when this process forked"
    return template, parent
