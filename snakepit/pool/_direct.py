"""The caller reads its own reply: ``Pool.call`` with no thread hand-off.

Through a reader thread a round trip wakes three threads in turn: the
worker, the reader (the reply came), the caller (its future completed).
Each wake-up of a sleeping thread costs tens of microseconds, more than
the call itself. A caller that sends a call to an *idle* worker and then
reads the reply from the worker's socket itself wakes only the worker, and
while it polls the socket for a moment before sleeping (``spin_seconds``),
not even itself. Everything else is unchanged: the reply goes through the
same code (``WorkerHandle.take_frame``) whichever thread read it.

Who reads a worker's stream is its :class:`Channel`'s ``reads``:

* ``thread``: the reader thread (``WorkerHandle._read``), as always while the
  worker starts, runs a call made with ``submit`` (or queued), or is stopped;
* ``nobody``: the worker is idle. Its reader thread sleeps on ``turn``, and
  the pool's watcher (``_watch.py``) has the socket armed: whatever an idle
  worker sends (a log line, an event, the end of its stream) hands the
  stream back to the thread. A caller that read its own reply does not arm
  the socket itself: the monitor arms every such socket still idle
  :data:`ARM_AFTER` seconds later (one ``epoll_ctl`` each way saved on
  every call to a busy pool; what an idle worker sends waits that long at
  most);
* ``caller``: a thread in ``Pool.call`` reads until its call is over
  (:func:`read_reply`): it sent the call to an idle worker itself, or its
  call waited in the queue and the stream's reader handed the stream over
  when the call was sent (:func:`wait_turn`), so that a busy pool's replies
  too go straight to the threads that wait for them.

One reader at a time, by three rules: only the current reader gives the
stream away, and only between two frames; anyone else may take it only
from ``nobody`` (dispatch: to the caller or the thread; the watcher, a
stop: to the thread); every change happens under the supervisor's lock.
Where sockets cannot be watched (no epoll or pidfd), readers never stop
reading and every call takes the thread's way.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
from typing import TYPE_CHECKING

from snakepit._wire import protocol
from snakepit.errors import SnakepitError

from ._cancel import cancel_call

if TYPE_CHECKING:
    from ._calls import Call
    from ._handle import WorkerHandle
    from ._supervisor import Supervisor
    from ._zygote import WorkerProcess

__all__ = ["ARM_AFTER", "Channel", "Waiter", "read_reply", "wait_turn"]

#: Seconds after a caller read its reply before the monitor arms its idle
#: worker's socket (a worker that gets the next call before then never is).
ARM_AFTER = 0.005


class Channel:
    """One worker process's stream, and who reads it now (see the module)."""

    __slots__ = (
        "armed",
        "fd",
        "frames",
        "generation",
        "handle",
        "init_error",
        "proc",
        "reads",
        "to_end",
        "turn",
    )

    def __init__(
        self,
        handle: WorkerHandle,
        generation: int,
        proc: WorkerProcess,
        sock: socket.socket,
        lock: threading.RLock,
    ) -> None:
        self.handle = handle
        self.generation = generation
        self.proc = proc
        self.fd = sock.fileno()
        self.frames = protocol.FrameReader(sock)
        self.reads = "thread"
        #: The watcher has the socket armed (only while ``reads`` is "nobody").
        self.armed = False
        self.turn = threading.Condition(lock)
        #: Read until the end of the stream, never giving it away (a stop).
        self.to_end = False
        #: The initializer's error, if the worker said it failed.
        self.init_error: SnakepitError | None = None


# ----------------------------------------------------- the reader thread


def reader_turn(sup: Supervisor, channel: Channel) -> None:
    """Before each frame the reader thread reads: give an idle worker's
    stream away, and return once it is the thread's to read again."""
    with sup.lock:
        if channel.reads == "thread" and not _hand_over_locked(channel):
            _park_locked(sup, channel)
        while channel.reads != "thread":
            channel.turn.wait()


def reader_closing(sup: Supervisor, channel: Channel) -> None:
    """The reader thread is about to close the socket: the watcher lets go of it."""
    sup._watcher.forget(channel.fd)


# ------------------------------------------------------- under the lock


def claim_locked(sup: Supervisor, call: Call, channel: Channel, caller: bool) -> None:
    """``call`` was just given to the idle worker of ``channel``: whoever
    reads its reply takes the stream, if nobody reads it.

    ``caller``: the call is the one its caller's thread is dispatching and
    will wait for (:func:`read_reply` then reads); a queued call's waiting
    caller is woken to read; else the thread reads.
    """
    if channel.reads != "nobody":
        return
    if channel.armed:
        channel.armed = False
        sup._watcher.disarm(channel.fd)
    if caller:
        channel.reads = "caller"
        call.read_from = channel
    elif not _hand_over_locked(channel):
        _wake_locked(channel)


def stop_locked(channel: Channel | None) -> None:
    """The worker is being stopped: its reader thread reads to the end."""
    if channel is not None:
        channel.to_end = True
        if channel.reads == "nobody":
            _wake_locked(channel)


def _park_locked(sup: Supervisor, channel: Channel, *, later: bool = False) -> None:
    """Give the stream to nobody if its worker is idle and nothing is pending;
    ``later``: the monitor arms the socket soon (see the module)."""
    handle = channel.handle
    if (
        channel.to_end
        or handle.state != "idle"
        or handle.current is not None
        or handle.channel is not channel
        or sup.stopping
        or channel.frames.buffer
    ):
        return
    if later and sup._watcher.supported():
        channel.reads = "nobody"
        if not sup.unarmed:
            sup.timers.schedule_locked(ARM_AFTER, functools.partial(_arm_idle, sup))
        sup.unarmed.add(channel)
    elif sup._watcher.arm(channel.fd, functools.partial(_readable, sup, channel)):
        channel.reads = "nobody"
        channel.armed = True


def _arm_idle(sup: Supervisor) -> None:
    """On the monitor: arm the sockets of workers still idle since their
    callers read their replies (the rest have calls again, or ended)."""
    with sup.lock:
        channels, sup.unarmed = sup.unarmed, set()
        for channel in channels:
            if channel.reads != "nobody" or channel.armed:
                continue
            if channel.handle.channel is not channel or channel.to_end:
                _wake_locked(channel)  # replaced or stopping: its reader reads on
            elif sup._watcher.arm(channel.fd, functools.partial(_readable, sup, channel)):
                channel.armed = True
            else:
                _wake_locked(channel)  # the watcher is closed: read on the thread


class Waiter:
    """What the waiting caller of a queued call sleeps on: released once,
    either to read the reply or because the call is over (lock held).

    The call's future holds it (in a done-callback), never the call: a
    future that refers to its call through a callback would be a cycle
    keeping the result, shared arrays included, until garbage collection.
    """

    __slots__ = ("lock", "released")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.released = False

    def release_locked(self) -> None:
        if not self.released:
            self.released = True
            self.lock.release()


def _hand_over_locked(channel: Channel) -> bool:
    """Give the stream to the caller waiting for the worker's current call."""
    call = channel.handle.current
    if call is None or channel.to_end or channel.handle.channel is not channel:
        return False
    waiter = call.waiter
    if waiter is None or waiter.released:
        return False
    channel.reads = "caller"
    call.read_from = channel
    waiter.release_locked()
    return True


def _wake_locked(channel: Channel) -> None:
    channel.reads = "thread"
    channel.armed = False
    channel.turn.notify()


def _readable(sup: Supervisor, channel: Channel) -> None:
    """On the watcher: an idle worker sent something (or ended)."""
    with sup.lock:
        channel.armed = False  # it fired: armed once only
        if channel.reads == "nobody":
            _wake_locked(channel)


# ------------------------------------------------------- the caller thread


def read_reply(sup: Supervisor, call: Call) -> None:
    """Read the worker's stream until ``call`` is over, on the caller's thread.

    Every frame goes through the reader's own code, so a log line or an
    event of the call arrives as it would. At the end, the stream goes to
    nobody (the worker is idle) or to the reader thread (it has another
    call, is being replaced, or ended: the thread reaps it and fails the
    call, as for any call). An interrupt (Ctrl-C) gives the stream back
    between frames and propagates; the call goes on and its future still
    completes. One in the middle of a frame loses the stream: the worker
    is stopped as if the call had been cancelled.
    """
    channel = call.read_from
    call.read_from = None
    if channel is None:
        return
    handle = channel.handle
    frames = channel.frames
    frames.spin_seconds = (
        protocol.poll_window(sup.caller_spin, sup.last_runs.get(call.fn_id)) if call.spin else 0.0
    )
    try:
        while True:
            polls_lost = frames.polls_lost
            payload = frames.read()
            if payload is None:
                break  # the worker is gone; its reader reaps it
            call.poll_lost = frames.polls_lost != polls_lost
            handle.take_frame(sup, channel, payload)
            del payload
            with sup.lock:
                if handle.current is call:
                    continue
                frames.spin_seconds = 0.0
                if _hand_over_locked(channel):
                    return
                channel.reads = "thread"
                _park_locked(sup, channel, later=True)
                if channel.reads == "thread":
                    channel.turn.notify()
                return
    except (OSError, protocol.ProtocolError):
        # As on the reader thread: a broken stream is a crash.
        with contextlib.suppress(OSError):
            channel.proc.kill()
    except BaseException:
        if not frames.intact:
            _abandon(sup, call, channel)
        _give_back(sup, channel)
        raise
    _give_back(sup, channel)


def wait_turn(sup: Supervisor, call: Call) -> None:
    """The waiting caller of a queued call: sleep until the call's worker
    hands it the stream (then read the reply), or until the call is over."""
    waiter = call.waiter
    if waiter is None:
        return
    call.outer.add_done_callback(functools.partial(_call_over, sup, waiter))
    try:
        waiter.lock.acquire()
    except BaseException:
        with sup.lock:
            waiter.released = True  # handed nothing from now on
            channel, call.read_from = call.read_from, None
            if channel is not None and channel.reads == "caller":
                _wake_locked(channel)
        raise
    finally:
        call.waiter = None
    read_reply(sup, call)


def _call_over(sup: Supervisor, waiter: Waiter, _future: object) -> None:
    with sup.lock:
        waiter.release_locked()


def _give_back(sup: Supervisor, channel: Channel) -> None:
    channel.frames.spin_seconds = 0.0
    with sup.lock:
        if channel.reads == "caller":
            _wake_locked(channel)


def _abandon(sup: Supervisor, call: Call, channel: Channel) -> None:
    """Interrupted in the middle of a frame: nobody can find the next one.
    The call ends as cancelled and its worker is stopped (not a crash)."""
    with contextlib.suppress(Exception):
        cancel_call(sup, call.outer, kill=True)
    with contextlib.suppress(OSError):
        channel.proc.kill()
