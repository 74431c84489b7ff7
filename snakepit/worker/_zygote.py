"""The template ("zygote") process: imports the worker once, forks fresh workers.

Started by the supervisor as ``python -m snakepit.worker zygote <fd>
<supervisor pid> [module ...]`` with one end of a ``SOCK_SEQPACKET`` pair
inherited as ``fd``. It imports everything a worker needs and the modules
named (the pool's ``preload``), checks that it runs no thread, says hello,
then serves requests, one message each (pickled tuples; descriptors travel
with ``SCM_RIGHTS``, as in CPython's ``multiprocessing.forkserver``). The
first request is sent while it imports, and waits in the socket; a template
that runs a thread says so in its hello and forks nothing::

    supervisor → template   ("spawn", env changes, cwd) + [worker socket, fault log]
    template → supervisor   ("hello", pid, failed imports, threads)
                            ("started", pid) + [pidfd of the worker, where supported]
                            ("failed", reason)
                            ("exit", pid, wait status)

Workers are the template's children, so the template reaps them and reports
each wait status: the supervisor classifies exits exactly as for a process
it started itself. The template never runs user code, holds no thread and
touches no GPU; it dies with the supervisor (``PR_SET_PDEATHSIG``) and its
workers die with it.

With ``Pool(template="supervisor")`` the template is instead a fork of the
supervisor (:func:`run_forked`, called in the copy by
:mod:`snakepit.pool._fork`), which lets go of what the supervisor holds and
then speaks the same protocol on a socket it inherited.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import gc
import importlib
import os
import pickle
import selectors
import signal
import socket
import sys
import threading
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

from snakepit._util import thread_count
from snakepit.telemetry import _bus
from snakepit.worker import _blas, _main

#: Largest request or reply; requests carry only the variables that differ.
MAX_MESSAGE = 1 << 16
#: Descriptors a request carries: the worker's socket and its fault log.
_REQUEST_FDS = 2
#: Modules a worker imports on first use, which the template imports once
#: it has been idle this long (its first workers are out by then): error
#: records and their parsers (``snakepit.errors._remote.DEFERRED_IMPORTS``),
#: cloudpickle (a function or result sent by value), psutil, the torch
#: memory report (once torch is loaded), log forwarding (once logging is:
#: the error records load it), the CUDA carrier's modules (the first CUDA
#: object sent or received loads them).
DEFERRED_IMPORTS = (
    "snakepit.errors._remote",
    "snakepit.worker._logs",
    "snakepit.zero_copy._cuda_leases",
    "snakepit.zero_copy._cuda_arrays",
    "snakepit.zero_copy._cuda_memory",
    "snakepit.errors._parse",
    "snakepit.errors._probe",
    "cloudpickle",
    "psutil",
    "snakepit.telemetry._gpu",
)
_IDLE_SECONDS = 0.05


#: Children of the thread check in :func:`_preload`, which no one asked for.
_throwaway: set[int] = set()


def _preload(names: list[str]) -> list[tuple[str, str]]:
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # reported; the workers import it themselves
            failed.append((name, f"{type(exc).__name__}: {exc}"))
    if thread_count() > 1:
        # Libraries that start thread pools at import (OpenBLAS) stop them
        # in their pre-fork handlers: one throwaway fork shows whether
        # anything is left that would be copied into workers half-done.
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking with threads: that is the check.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os._exit(0)
        # The threads stopped before fork() returned here: the child's exit
        # need not be waited for (Template._reap reaps it, unreported).
        _throwaway.add(pid)
    return failed


def _send(ctl: socket.socket, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
    data = pickle.dumps(message)
    if fds:
        socket.send_fds(ctl, [data], fds)
    else:
        ctl.send(data)


def _child_exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_child(
    fds: list[int],
    changes: dict[str, str | None],
    cwd: str | None,
    supervisor_pid: int,
    parent: int,
) -> None:
    """In the forked worker: become what ``python -m snakepit.worker`` would be. Never returns."""
    code = 1
    gc.enable()
    try:
        # The at-fork hook from _main already asked for SIGKILL when the
        # template dies; it may have died before that took effect.
        if os.getppid() != parent:
            os._exit(0)
        os.setsid()  # its own process group, as start_new_session gives
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if cwd is not None:
            with contextlib.suppress(OSError):
                os.chdir(cwd)
        _blas.restore_in_worker()
        _reseed()
        # What ``python -m snakepit.worker <fd> <pid> <fault fd>`` would see.
        entry = os.path.join(os.path.dirname(os.path.abspath(_main.__file__)), "__main__.py")
        sys.argv = [entry, str(fds[0]), str(supervisor_pid), str(fds[1])]
        code = _main.run(fds[0], supervisor_pid, fds[1])
    except SystemExit as exc:
        code = _child_exit_code(exc)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    # What interpreter exit would do: wait for non-daemon threads, run atexit
    # hooks, flush; never return into the template's loop.
    with contextlib.suppress(BaseException):
        getattr(threading, "_shutdown", lambda: None)()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def _reseed() -> None:
    """Forked siblings must not share random streams (``random`` reseeds itself)."""
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        with contextlib.suppress(Exception):
            np_random.seed()


class Template:
    """The template's loop: fork on request, reap and report."""

    def __init__(self, ctl: socket.socket, supervisor_pid: int, watched: int | None = None) -> None:
        self.ctl = ctl
        self.supervisor_pid = supervisor_pid
        #: A pidfd of the supervisor (a template forked from it): readable when it exits.
        self.watched = watched
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> int:
        """Serve requests until the supervisor closes the socket."""
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(self.ctl, selectors.EVENT_READ)
        self.selector.register(self.wake_read, selectors.EVENT_READ)
        if self.watched is not None:
            self.selector.register(self.watched, selectors.EVENT_READ)
        self._reap()  # the throwaway fork, or anything that ended before the handler
        deferred = list(DEFERRED_IMPORTS)
        while True:
            events = self.selector.select(_IDLE_SECONDS if deferred else None)
            if not events and deferred:
                # Idle after the first workers are out: import what workers
                # need only later (error parsing), so that forks from now on
                # (restarts) have it too. Nothing here starts a thread.
                _preload(deferred)
                deferred = []
            for key, _ in events:
                if key.fileobj == self.watched:
                    return 0  # the supervisor died: our workers die with us
                if key.fileobj == self.wake_read:
                    with contextlib.suppress(OSError):
                        os.read(self.wake_read, 4096)
                    self._reap()
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(self.ctl, MAX_MESSAGE, _REQUEST_FDS)
                except OSError:
                    return 0
                if not data:
                    return 0  # the supervisor is done: our workers die with us
                self._spawn(data, fds)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in _throwaway:
                _throwaway.discard(pid)
                continue
            with contextlib.suppress(OSError):
                _send(self.ctl, ("exit", pid, status))

    def _spawn(self, data: bytes, fds: list[int]) -> None:
        try:
            op, changes, cwd = pickle.loads(data)
            if op != "spawn" or len(fds) != _REQUEST_FDS:
                raise ValueError(f"bad request {op!r} with {len(fds)} descriptors")
            # The template's objects move out of the collector's reach: the
            # child's collections would otherwise write to (and so copy)
            # every page holding them. The template runs without collecting
            # (started with gc.disable(), as the gc docs advise for forking).
            gc.freeze()
            pid = os.fork()
        except Exception as exc:  # the supervisor starts a fresh interpreter instead
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                _send(self.ctl, ("failed", f"{type(exc).__name__}: {exc}"))
            return
        if pid == 0:
            self._leave()
            _run_child(fds, changes, cwd, self.supervisor_pid, os.getppid())
        for fd in fds:
            os.close(fd)
        # A pidfd names this process even after it is reaped, so the
        # supervisor can signal it without hitting a recycled pid.
        pidfds: list[int] = []
        with contextlib.suppress(OSError, AttributeError):
            pidfds.append(os.pidfd_open(pid))
        try:
            _send(self.ctl, ("started", pid), pidfds)
        except OSError:
            pass
        finally:
            for fd in pidfds:
                os.close(fd)

    def _leave(self) -> None:
        """In a new child: drop the template's signal handling and descriptors."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            self.selector.close()
        for fd in (self.wake_read, self.wake_write, self.watched):
            if fd is None:
                continue
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.ctl.close()


def main(argv: list[str]) -> int:
    """Entry point of ``python -m snakepit.worker zygote <fd> <supervisor pid> [module ...]``."""
    if len(argv) < 2:
        print("usage: python -m snakepit.worker zygote <fd> <supervisor pid> [module ...]")
        return 2
    fd, supervisor_pid = int(argv[0]), int(argv[1])
    # Workers forked from here inherit the at-fork hook that ties them (and
    # whatever they fork) to their parent's death.
    _main.die_with_parent(supervisor_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _greet_and_serve(socket.socket(fileno=fd), supervisor_pid, argv[2:], None)


def _greet_and_serve(
    ctl: socket.socket, supervisor_pid: int, preload: list[str], watched: int | None
) -> int:
    failed = _preload(preload)
    _blas.find_in_template()
    threads = thread_count()
    _send(ctl, ("hello", os.getpid(), failed, threads))
    if threads > 1:
        # Not safe to fork: the supervisor starts fresh interpreters instead.
        # Requests it sent before reading our hello are dropped unanswered,
        # until it closes the socket (not before: unread data left behind
        # would reset the stream, hello and all).
        return _refuse(ctl)
    return Template(ctl, supervisor_pid, watched).serve()


def run_forked(fd: int, supervisor_pid: int, preload: list[str], env: Mapping[str, str]) -> None:
    """In a fork of the supervisor: become its pool's template. Never returns.

    What the supervisor held that a fresh template would not have is let go
    of first: its descriptors (a worker must not keep the supervisor's
    sockets and files open, nor write to them), its exit hooks, signal
    handlers and log handlers, its environment (the pool's instead). Its
    objects stay, frozen (never collected, so no finalizer of theirs runs
    here or in a worker). The supervisor's death is watched through a
    pidfd, not ``PR_SET_PDEATHSIG``, which follows the thread that forked
    (one that may end while the pool lives).
    """
    code = 1
    try:
        gc.disable()
        gc.freeze()
        os.setsid()
        _let_go_of_supervisor(fd, env)
        watched: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            watched = os.pidfd_open(supervisor_pid)
        if watched is None:
            _main.die_with_parent(supervisor_pid)  # ties its workers to it as well
        else:
            if os.getppid() != supervisor_pid:
                os._exit(0)  # the supervisor died before the pidfd named it
            # Workers forked from here die with it (and whatever they fork with them).
            os.register_at_fork(after_in_child=_main.die_with_worker)
        code = _greet_and_serve(socket.socket(fileno=fd), supervisor_pid, preload, watched)
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    os._exit(code)


def _let_go_of_supervisor(keep: int, env: Mapping[str, str]) -> None:
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            handler = signal.getsignal(signum)
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    # The interpreter's own streams on descriptors 0-2, as a fresh one has,
    # not replacements that may write to a descriptor closed below.
    sys.stdin, sys.stdout, sys.stderr = (
        sys.__stdin__ or sys.stdin,
        sys.__stdout__ or sys.stdout,
        sys.__stderr__ or sys.stderr,
    )
    faulthandler.disable()  # its file may be one of them; workers enable their own
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    if keep != 0:
        null = os.open(os.devnull, os.O_RDONLY)
        if null != 0:
            os.dup2(null, 0)
            os.close(null)
    atexit._clear()
    getattr(threading, "_threading_atexits", []).clear()
    # The supervisor's finalizers (a pool's shutdown among them) must never
    # run here; the worker's own register with atexit anew.
    weakref.finalize._registry.clear()  # type: ignore[attr-defined]
    weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
    logging = sys.modules.get("logging")
    if logging is not None:
        # Their streams are closed here; a fresh interpreter has none.
        for logger in (logging.root, *logging.Logger.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger):
                logger.handlers.clear()
    # A fresh worker has attached no telemetry handler: its events reach the
    # supervisor's handlers by forwarding only.
    _bus.forget_handlers()
    os.environ.clear()
    os.environ.update(env)


def _max_fd() -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        soft = -1
    return soft if soft > 0 else 1 << 20


def _refuse(ctl: socket.socket) -> int:
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, MAX_MESSAGE, _REQUEST_FDS)
        except OSError:
            return 0
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if not data:
            return 0
