"""One worker position of a pool: its process, its socket, its reader thread.

A :class:`WorkerHandle` starts a worker process, reads its replies on a
thread of its own, and reaps it; what those replies and exits *mean* is the
supervisor's business (:class:`Owner`). The handle's fields are guarded by
the supervisor's lock; the handle itself never takes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol

from snakepit._wire import codec, protocol
from snakepit.errors import SnakepitError
from snakepit.errors._remote import record_to_exception
from snakepit.zero_copy import _runtime as zero_copy

from ._exits import ExitInfo
from ._watch import kill_group
from ._worker_logs import relay as relay_log
from ._zygote import WorkerProcess, Zygote

if TYPE_CHECKING:
    from ._calls import Call
    from ._direct import Channel

__all__ = ["Ends", "Owner", "Started", "WorkerHandle", "read_fault_log", "start_processes"]

#: Most bytes of a worker's fault log read back (all threads' stacks).
_FAULT_LOG_LIMIT = 64 << 10


class Owner(Protocol):
    """What a handle's reader reports to (the supervisor)."""

    def worker_ready(self, handle: WorkerHandle, generation: int, pid: int) -> None: ...

    def worker_event(self, handle: WorkerHandle, pid: int, body: Any) -> None: ...

    def worker_retiring(self, handle: WorkerHandle, body: Any) -> None: ...

    def worker_reply(self, handle: WorkerHandle, tag: str, call_id: int, body: Any) -> None: ...

    def worker_exited(
        self,
        handle: WorkerHandle,
        generation: int,
        returncode: int | None,
        *,
        init_error: SnakepitError | None = None,
    ) -> None: ...

    def reader_turn(self, channel: Channel) -> None: ...

    def reader_closing(self, channel: Channel) -> None: ...


def read_fault_log(log: IO[bytes] | None) -> str | None:
    """What a dead worker's faulthandler wrote (Python stacks at the crash); closes it."""
    if log is None:
        return None
    with log:
        try:
            log.seek(0)
            text = log.read(_FAULT_LOG_LIMIT).decode("utf-8", "replace").strip()
        except OSError:
            return None
    return text or None


#: A new process's ends: the supervisor's socket, the worker's, its fault log.
Ends = tuple[socket.socket, socket.socket, IO[bytes]]
#: A started process: it, the supervisor's socket and its fault log.
Started = tuple[WorkerProcess, socket.socket, IO[bytes]]


def close_ends(ends: Ends) -> None:
    """Close a new process's ends (it did not start)."""
    for resource in ends:
        with contextlib.suppress(OSError):
            resource.close()


def start_processes(
    handles: Sequence[WorkerHandle], zygote: Zygote | None
) -> list[Started | OSError | subprocess.SubprocessError]:
    """Start a process for each of ``handles``: forked by ``zygote`` where it
    can (all requested at once, see :meth:`Zygote.spawn_many`), else fresh.

    Each entry, in the order of ``handles``, is the started process or the
    error that kept it from starting (out of descriptors or processes), with
    nothing left open.
    """
    outcomes: dict[int, Started | OSError | subprocess.SubprocessError] = {}
    opened: dict[int, Ends] = {}
    try:
        for position, handle in enumerate(handles):
            try:
                opened[position] = handle.open_ends()
            except OSError as exc:
                outcomes[position] = exc
        forked: list[WorkerProcess | None] = [None] * len(opened)
        if zygote is not None and opened:
            requests = [
                (handles[position].env, ends[1].fileno(), ends[2].fileno())
                for position, ends in opened.items()
            ]
            forked = list(zygote.spawn_many(requests))
    except BaseException:
        for ends in opened.values():
            close_ends(ends)
        raise
    for (position, ends), process in zip(opened.items(), forked, strict=True):
        try:
            outcomes[position] = handles[position].launch(ends, process)
        except (OSError, subprocess.SubprocessError) as exc:
            outcomes[position] = exc
    return [outcomes[position] for position in range(len(handles))]


class WorkerHandle:
    """A worker position: the process currently in it and its history.

    ``state`` is one of ``starting``, ``idle``, ``busy``, ``terminating``
    (a timed-out or cancelled call's process being killed), ``draining``
    (shutdown), ``crashed``, ``unhealthy`` (given up on), ``stopped``,
    ``retiring`` (to be replaced after its reply) and ``parked`` (idle
    timeout: no process until a call needs one).
    """

    def __init__(self, index: int, device: str | None, env: dict[str, str]) -> None:
        self.index = index
        self.device = device
        self.env = env
        self.state = "starting"
        self.proc: WorkerProcess | None = None
        self.sock: socket.socket | None = None
        self.generation = 0
        self.current: Call | None = None
        self.known_fns: set[int] = set()
        self.queue: deque[Call] = deque()
        self.crash_times: deque[float] = deque()
        self.timed_out = False
        # Its running call was cancelled: the process is being stopped on
        # request, and its exit is classified ``cancelled``, not a crash.
        self.cancelled = False
        self.restarts = 0
        self.oom_before: int | None = None
        self.fault_log: IO[bytes] | None = None
        self.reader: threading.Thread | None = None
        #: The current process's stream and who reads it (see _direct.py).
        self.channel: Channel | None = None
        self.last_exit: ExitInfo | None = None
        self.init_error: SnakepitError | None = None
        # The worker notes here the references it holds on blocks it does not
        # own, so they can be dropped when it dies.
        self.ledger_memory = zero_copy.zeros(zero_copy.LEDGER_BYTES, "uint8")
        self.ledger = zero_copy.LeaseLedger(self.ledger_memory)
        self.spawned = 0.0  # time.monotonic() of the current process's start
        self.stopped_by_pool = False  # shutdown ended this process
        # Recycling (see _recycle.py): calls the process answered, why it is
        # to be replaced after its reply, and since when it has been idle.
        self.tasks = 0
        self.retire: tuple[str, int | None] | None = None
        self.idle_since = 0.0
        #: The CPU the worker answered its last call from (-1: none yet).
        self.cpu = -1

    @property
    def pid(self) -> int | None:
        """The current process's pid, if one is running."""
        return self.proc.pid if self.proc is not None else None

    def open_ends(self) -> Ends:
        """The socket pair and fault log of a new process for this position.

        Raises OSError (out of descriptors) with nothing left open.
        """
        opened: list[Any] = []
        try:
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            opened += (parent_sock, child_sock)
            # The worker's faulthandler writes here where native code crashed
            # (or where a timed-out call was stuck); read back after it died.
            fault_log = tempfile.TemporaryFile(prefix="snakepit-fault-")  # noqa: SIM115 - closed when the worker exits
        except BaseException:
            for resource in opened:
                with contextlib.suppress(OSError):
                    resource.close()
            raise
        return parent_sock, child_sock, fault_log

    def launch(self, ends: Ends, forked: WorkerProcess | None) -> Started:
        """The process serving ``ends``: ``forked`` by the template, else a
        fresh interpreter (``python -m snakepit.worker``).

        Returns the process, the supervisor's end of its socket pair and its
        fault log. Raises OSError or SubprocessError (out of descriptors or
        processes) with ``ends`` closed.
        """
        parent_sock, child_sock, fault_log = ends
        try:
            proc: WorkerProcess = forked or subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snakepit.worker",
                    str(child_sock.fileno()),
                    str(os.getpid()),
                    str(fault_log.fileno()),
                ],
                pass_fds=(child_sock.fileno(), fault_log.fileno()),
                env=self.env,
                stdin=subprocess.DEVNULL,
                # Its own process group: the worker and everything it starts
                # are killed together.
                start_new_session=True,
            )
        except BaseException:
            close_ends(ends)
            raise
        child_sock.close()
        return proc, parent_sock, fault_log

    def start_reader(self, owner: Owner, channel: Channel, grace: float) -> None:
        """Read the process's messages on a new thread until it is gone."""
        reader = threading.Thread(
            target=self._read,
            args=(owner, channel, grace),
            name=f"snakepit-reader-{self.index}",
            daemon=True,
        )
        self.reader = reader
        reader.start()

    def _read(self, owner: Owner, channel: Channel, grace: float) -> None:
        proc = channel.proc
        try:
            while True:
                # An idle worker's stream may be read by the next caller
                # meanwhile (see _direct.py).
                owner.reader_turn(channel)
                payload = channel.frames.read()
                if payload is None:
                    break
                self.take_frame(owner, channel, payload)
                # Nothing here may refer to the frame when the next one is
                # read: only then can its warm memory be reused for it.
                del payload
        except BaseException:
            # A broken stream, or anything else this thread did not expect, is
            # treated like a crash: the worker is replaced and its call failed.
            # This thread must reach the reaping below, or the position stays
            # "idle" with a dead socket for good.
            with contextlib.suppress(OSError):
                proc.kill()
            if not isinstance(sys.exc_info()[1], (OSError, protocol.ProtocolError)):
                logging.getLogger(__name__).exception("snakepit reader failed")
        finally:
            owner.reader_closing(channel)
            with contextlib.suppress(OSError):
                channel.frames.sock.close()
        returncode = reap(proc, grace)
        owner.worker_exited(self, channel.generation, returncode, init_error=channel.init_error)

    def take_frame(self, owner: Owner, channel: Channel, payload: protocol.Payload) -> None:
        """Act on one frame of the worker's stream, whichever thread read it."""
        tag, ident, body = protocol.unpack(payload)
        del payload
        if tag in (protocol.MSG_RESULT, protocol.MSG_ERROR):
            owner.worker_reply(self, tag, ident, body)
        elif tag == protocol.MSG_READY:
            owner.worker_ready(self, channel.generation, channel.proc.pid)
        elif tag == protocol.MSG_EVENT:
            owner.worker_event(self, channel.proc.pid, body)
        elif tag == protocol.MSG_LOG:
            relay_log(body, self.index, channel.proc.pid)
        elif tag == protocol.MSG_RETIRE:
            owner.worker_retiring(self, body)
        elif tag == protocol.MSG_INIT_FAILED:
            channel.init_error = record_to_exception(codec.decode(body))
        else:
            raise protocol.ProtocolError(f"unexpected message {tag!r}")

    def join_reader(self, timeout: float) -> None:
        """Wait for the reader thread (not from the reader itself)."""
        reader = self.reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=max(0.0, timeout))


def reap(proc: WorkerProcess, grace: float) -> int:
    """Wait for a worker that closed its socket; kill it if it lingers; end its group."""
    try:
        returncode = proc.wait(timeout=max(grace, 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()  # closed its socket but did not exit: finish it
        returncode = proc.wait()
    # Whatever the worker started dies with it.
    kill_group(proc.pid)
    return returncode


def stop_process(
    proc: WorkerProcess, sock: socket.socket | None, *, graceful: bool, grace: float
) -> None:
    """End a worker: ask it to stop (``graceful``) and wait, else kill it."""
    if graceful and sock is not None:
        with contextlib.suppress(OSError):
            protocol.send_frame(sock, protocol.pack(protocol.MSG_SHUTDOWN, 0, None))
        try:
            proc.wait(timeout=grace + 1.0)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def kill_if_alive(proc: WorkerProcess) -> None:
    """Kill a process that has not exited yet (a timed-out worker after its grace)."""
    if proc.poll() is None:
        proc.kill()


def on_process_exit(pid: int, sock: socket.socket) -> None:
    """A worker process exited: end its process group (children that still
    hold its socket), then shut the socket so its reader sees the end."""
    kill_group(pid)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
