"""The pool's side of its template process (see :mod:`snakepit.worker._zygote`).

A fresh interpreter spends most of a worker's start importing (snakepit's
worker modules and numpy: ~340 ms of ~480 ms here). A pool starts one
template process that has done those imports, plus the modules named by
``Pool(preload=...)``, and asks it to fork each worker: a worker then starts
in a few milliseconds, and a crashed one is replaced as fast.

The first worker's fork request is sent as soon as the template process
exists, so the template forks it the moment its imports are done.

The template is started lazily by the first worker start, on the pool's
monitor thread (``PR_SET_PDEATHSIG`` follows the thread that started a
process: that thread lives as long as the pool), and closed by shutdown.
Whenever it cannot fork (not Linux, it failed to start, it runs a thread
after preloading, it died and its restarts failed too) :meth:`Zygote.spawn_many`
returns None and the pool starts a fresh interpreter as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

# The supervisor pickles every function it sends with cloudpickle, which the
# codec imports on first use (workers rarely need it): imported with the
# pool, so that the first call does not pay for it.
import cloudpickle  # noqa: F401

from snakepit.worker import _blas

from ._fork import ForkedTemplate, fork_when_safe

__all__ = [
    "TEMPLATES",
    "ForkedProcess",
    "Request",
    "WorkerProcess",
    "Zygote",
    "default_preload",
    "supported",
]

_log = logging.getLogger(__name__)

#: Templates a pool starts (each after the last one died) before it starts
#: fresh interpreters instead.
_MAX_STARTS = 5
#: Seconds a template may take to import its modules (torch can take several).
_HELLO_TIMEOUT = 120.0
#: Seconds to wait for the template to answer a fork request.
_SPAWN_TIMEOUT = 30.0
#: Fork requests sent before their replies are read (see Zygote.spawn_many).
_AHEAD = 8
_MAX_MESSAGE = 1 << 16

#: What a fork request needs: the worker's environment, its socket and its fault log.
Request = tuple[Mapping[str, str], int, int]


class WorkerProcess(Protocol):
    """What the pool uses of a worker process (``subprocess.Popen`` has it)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | Any: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...

    def terminate(self) -> None: ...

    def send_signal(self, signum: int) -> None: ...


def supported() -> bool:
    """Whether forking workers from a template is safe here (Linux only)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def default_preload() -> tuple[str, ...]:
    """What ``preload="auto"`` imports: numpy, which most calls bring."""
    import importlib.util

    return ("numpy",) if importlib.util.find_spec("numpy") is not None else ()


class ForkedProcess:
    """A worker forked by the template: the part of ``Popen`` the pool uses.

    Its wait status comes from the template, which reaps it.
    """

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._lock = threading.Lock()
        self._done = threading.Event()

    def poll(self) -> int | None:
        """The return code if the process has exited (as ``Popen.poll``)."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status (raises ``subprocess.TimeoutExpired``)."""
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"snakepit worker {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the process unless it has been reaped (never a recycled pid)."""
        with self._lock:
            if self.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, signum)
                else:
                    os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL, as ``Popen.kill``."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM, as ``Popen.terminate``."""
        self.send_signal(signal.SIGTERM)

    def exited(self, returncode: int) -> None:
        """The template reaped it (or it died with the template)."""
        with self._lock:
            if self.returncode is not None:
                return
            self.returncode = returncode
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._done.set()

    def wait_gone(self, timeout: float) -> None:
        """Wait until the process no longer runs (its pidfd turns readable).

        Only the thread that calls :meth:`exited` may call this.
        """
        pidfd = self._pidfd
        if pidfd is not None and self.returncode is None:
            with contextlib.suppress(OSError, ValueError):
                select.select([pidfd], [], [], timeout)


class _Template:
    """One running template: its process, control socket, replies and children."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes] | ForkedTemplate,
        ctl: socket.socket,
        env: Mapping[str, str],
    ) -> None:
        self.proc = proc
        self.ctl = ctl
        #: Its environment: a worker's request carries what differs from it.
        self.env = env
        self.launched = time.monotonic()
        self.greeted = False  # its hello read; its messages are read by a thread
        self.replies: queue.Queue[ForkedProcess | str | None] = queue.Queue()
        self.children: dict[int, ForkedProcess] = {}
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self) -> None:
        """Its messages: fork replies, and its children's exit statuses."""
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(self.ctl, _MAX_MESSAGE, 1)
                if not data:
                    break
                message: tuple[Any, ...] = pickle.loads(data)
                if message[0] == "started":
                    child = ForkedProcess(message[1], fds[0] if fds else None)
                    with self.lock:
                        self.children[child.pid] = child
                    self.replies.put(child)
                    continue
                for fd in fds:
                    os.close(fd)
                if message[0] == "exit":
                    with self.lock:
                        exited = self.children.pop(message[1], None)
                    if exited is not None:
                        exited.exited(os.waitstatus_to_exitcode(message[2]))
                elif message[0] == "failed":
                    self.replies.put(str(message[1]))
        except (OSError, EOFError, pickle.PickleError, IndexError, ValueError):
            pass  # a broken stream is the template's end
        finally:
            self.orphaned()

    def orphaned(self) -> None:
        """The template is gone: its workers were SIGKILLed with it (PR_SET_PDEATHSIG)."""
        self.replies.put(None)
        with self.lock:
            children, self.children = list(self.children.values()), {}
        for child in children:
            child.kill()
        for child in children:
            # Reaped by init now: no status reaches us, but the signal is known.
            child.wait_gone(5.0)
            child.exited(-signal.SIGKILL)

    def stop(self) -> None:
        """End of stream: the template exits, and its workers with it."""
        with contextlib.suppress(OSError):
            self.ctl.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.ctl.close()


class Zygote:
    """One pool's template process: started on demand, forks workers on request.

    Only the pool's monitor thread calls :meth:`spawn_many`: the template dies
    when the thread that started it ends (see the module docstring).
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        preload: Sequence[str],
        fork_supervisor: bool = False,
    ) -> None:
        self.name = name
        # The template's own environment; each worker's differences from it
        # travel with its request (OpenBLAS's pin among them, see _blas).
        self.env = _blas.template_env(env)
        #: A fork of this process keeps the OpenBLAS it loaded: no pin.
        self.fork_env = dict(env)
        self.preload = tuple(preload)
        #: Pool(template="supervisor"): :meth:`prefork` forks this process as the template.
        self.fork_supervisor = fork_supervisor
        self._lock = threading.Lock()  # one request at a time, and start/close
        self._template: _Template | None = None
        self._starts = 0
        self._closed = False
        self._disabled = not supported()
        self.started_seconds: float | None = None  # how long the last template took

    @property
    def pid(self) -> int | None:
        """The template's pid while one runs."""
        template = self._template
        return template.proc.pid if template is not None and template.alive() else None

    @property
    def forked_from_supervisor(self) -> bool:
        """Whether the running template is a fork of this process (``template="supervisor"``)."""
        template = self._template
        return template is not None and isinstance(template.proc, ForkedTemplate)

    def prefork(self) -> None:
        """Where the pool asked for it: fork this process as the template, now.

        Called by the pool's constructor, on the thread creating it, before
        any thread of the pool runs. Where forking this process is not safe
        (another thread runs, a GPU driver is loaded) the pool says why and
        its template is a fresh interpreter, started on demand as usual.
        """
        if not self.fork_supervisor or self._disabled:
            return
        with self._lock:
            if self._closed or self._template is not None:
                return
            forked = fork_when_safe(self.fork_env, self.preload)
            if isinstance(forked, str):
                _log.warning(
                    "snakepit %s: the worker template is a fresh interpreter, not a "
                    "fork of this process: %s",
                    self.name,
                    forked,
                )
                return
            self._starts += 1
            self._template = _Template(*forked, self.fork_env)

    def spawn_many(self, requests: Sequence[Request]) -> list[ForkedProcess | None]:
        """Fork a worker for each request: it serves the request's socket with
        its environment. In order, the forked process, or None where the
        template cannot do it (the caller starts a fresh interpreter); the
        descriptors stay the caller's either way.

        Every request is sent before any reply is read, so the template
        forks them back to back (a pool's first workers start side by side)
        instead of one per round trip through this thread. At most
        :data:`_AHEAD` wait at a time: each holds two descriptors in flight.
        """
        forked: list[ForkedProcess | None] = []
        for first in range(0, len(requests), _AHEAD):
            forked += self._spawn_batch(requests[first : first + _AHEAD])
        return forked

    def _spawn_batch(self, requests: Sequence[Request]) -> list[ForkedProcess | None]:
        forked: list[ForkedProcess | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        with self._lock:
            # A template that died just before the requests (killed with its
            # workers, whose restart this is) is replaced once, right away.
            for _ in range(2):
                template = self._launched() if pending else None
                if template is None:
                    break
                messages = [self._request(env, template.env) for env, _, _ in requests]
                # A request too large for one message gets a fresh interpreter.
                pending = [i for i in pending if messages[i] is not None]
                # Sent before the template has finished importing: it forks
                # as soon as it is ready, without waiting for our answer.
                sent = 0
                for i in pending:
                    _, sock_fd, fault_fd = requests[i]
                    message = messages[i]
                    assert message is not None  # pending holds only the ones that fit
                    try:
                        socket.send_fds(template.ctl, [message], [sock_fd, fault_fd])
                    except OSError:
                        break  # it died: _greet or the retry below says so
                    sent += 1
                if not template.greeted and not self._greet(template):
                    if self._disabled:
                        break
                    continue  # a fork of this process that failed: a fresh template
                unanswered = self._collect(template, pending[:sent], forked)
                if not unanswered and sent == len(pending):
                    break
                self._stop_locked()  # dead, broken or stuck
                pending = unanswered + pending[sent:]
        return forked

    @staticmethod
    def _request(env: Mapping[str, str], template_env: Mapping[str, str]) -> bytes | None:
        changes: dict[str, str | None] = {k: v for k, v in env.items() if template_env.get(k) != v}
        changes.update({k: None for k in template_env if k not in env})
        try:
            cwd: str | None = os.getcwd()
        except OSError:
            cwd = None  # removed: the worker keeps the template's
        request = pickle.dumps(("spawn", changes, cwd))
        # None: the variables that differ do not fit one message.
        return request if len(request) <= _MAX_MESSAGE else None

    def _collect(
        self, template: _Template, sent: list[int], forked: list[ForkedProcess | None]
    ) -> list[int]:
        """Read the replies to ``sent``, in order, into ``forked``; the
        requests left unanswered because the template died or got stuck."""
        for position, i in enumerate(sent):
            try:
                reply = template.replies.get(timeout=_SPAWN_TIMEOUT)
            except queue.Empty:
                reply = None
            if isinstance(reply, ForkedProcess):
                forked[i] = reply
            elif isinstance(reply, str):
                _log.warning(
                    "snakepit %s: the template could not fork a worker: %s", self.name, reply
                )
            else:
                return sent[position:]
        return []

    def close(self) -> None:
        """Stop the template (its remaining workers die with it); no more forks."""
        with self._lock:
            self._closed = True
            self._stop_locked()

    # ------------------------------------------------------------ internals

    def _stop_locked(self) -> None:
        template, self._template = self._template, None
        if template is not None:
            template.stop()

    def _launched(self) -> _Template | None:
        """The running template, or a new one (not greeted yet); None: fresh interpreters."""
        if self._closed or self._disabled:
            return None
        if self._template is not None and self._template.alive():
            return self._template
        dead = self._template
        if dead is not None and not dead.greeted and isinstance(dead.proc, ForkedTemplate):
            self._failed_fork(f"it exited with status {dead.proc.returncode}")
        self._stop_locked()
        if self._starts >= _MAX_STARTS:
            self._disabled = True
            _log.warning(
                "snakepit %s: the worker template died %d times; workers start "
                "as fresh interpreters",
                self.name,
                self._starts,
            )
            return None
        self._starts += 1
        try:
            self._template = self._launch()
        except (OSError, subprocess.SubprocessError) as exc:
            self._give_up(exc)
            return None
        return self._template

    def _greet(self, template: _Template) -> bool:
        """Wait for the template's hello; False: it is stopped, fresh interpreters from now on."""
        try:
            usable = self._read_hello(template)
        except (OSError, EOFError, pickle.PickleError, ValueError) as exc:
            if isinstance(template.proc, ForkedTemplate):
                self._failed_fork(str(exc))
                self._stop_locked()
                return False
            # Mostly for good (a preloaded module that crashes): do not retry.
            self._give_up(exc)
            return False
        if not usable:
            self._disabled = True
            self._stop_locked()
            return False
        template.greeted = True
        self.started_seconds = time.monotonic() - template.launched
        threading.Thread(
            target=template.read, name=f"snakepit-zygote-{self.name}", daemon=True
        ).start()
        return True

    def _failed_fork(self, why: str) -> None:
        _log.warning(
            "snakepit %s: the fork of this process did not become a template (%s); "
            "a fresh interpreter does",
            self.name,
            why,
        )

    def _give_up(self, exc: BaseException) -> None:
        self._disabled = True
        _log.warning(
            "snakepit %s: the worker template did not start (%s); workers start "
            "as fresh interpreters",
            self.name,
            exc,
        )
        self._stop_locked()

    def _launch(self) -> _Template:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Its reader blocks until the template speaks, whatever default
        # timeout user code gave new sockets (one that fires reads as a
        # dead template, and its workers die with it).
        parent.settimeout(None)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snakepit.worker",
                    "zygote",
                    str(child.fileno()),
                    str(os.getpid()),
                    *self.preload,
                ],
                pass_fds=(child.fileno(),),
                env=self.env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return _Template(proc, parent, self.env)

    def _read_hello(self, template: _Template) -> bool:
        """The template's greeting; False where forking from it is not safe."""
        parent, proc = template.ctl, template.proc
        ready, _, _ = select.select([parent], [], [], _HELLO_TIMEOUT)
        data = parent.recv(_MAX_MESSAGE) if ready else b""
        if not data:
            raise EOFError("the template exited or did not answer before its imports finished")
        op, pid, failed, threads = pickle.loads(data)
        if op != "hello" or pid != proc.pid:
            raise ValueError(f"unexpected greeting {op!r} from the template")
        for module, error in failed:
            if module in self.preload:
                _log.warning("snakepit %s: could not preload %s: %s", self.name, module, error)
        if threads > 1:
            # Threads copied into a fork are stopped mid-step (a lock held, a
            # queue half-written): forking from here is not safe. The template
            # knows, and does not fork the request already sent.
            _log.warning(
                "snakepit %s: the worker template runs %d threads after preloading %s; "
                "workers start as fresh interpreters",
                self.name,
                threads,
                ", ".join(self.preload) or "nothing",
            )
            return False
        return True


def zygote_for(
    name: str,
    env: Mapping[str, str],
    preload: Sequence[str] | str | None,
    template: str = "fresh",
) -> Zygote | None:
    """The template for a pool given ``Pool(preload=..., template=...)``; None: fresh interpreters.

    ``"auto"`` preloads numpy when it is installed; a list names the modules
    (``[]``: only snakepit's own); None turns the template off.
    ``template``: ``"fresh"`` (a new interpreter) or ``"supervisor"`` (a
    fork of this process, see :meth:`Zygote.prefork`).
    """
    if template not in TEMPLATES:
        raise ValueError(f"template takes {' or '.join(map(repr, TEMPLATES))}, not {template!r}")
    if preload is None:
        if template != "fresh":
            raise ValueError(f"template={template!r} needs a template: preload=None turns it off")
        return None
    if isinstance(preload, str):
        if preload != "auto":
            raise ValueError(
                f'preload takes a list of module names, "auto" or None, not {preload!r}'
            )
        names: tuple[str, ...] = default_preload()
    else:
        names = tuple(preload)
    for module in names:
        if not isinstance(module, str) or not module:
            raise ValueError(f"preload takes module names, not {module!r}")
    return Zygote(name, env, names, fork_supervisor=template == "supervisor")


#: What ``Pool(template=...)`` takes.
TEMPLATES = ("fresh", "supervisor")


#: What ``Pool(template=...)`` takes.
TEMPLATES = ("fresh", "supervisor")
