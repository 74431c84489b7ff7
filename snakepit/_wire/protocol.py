"""The one protocol between the supervisor and its workers.

Frames on a private ``socketpair`` (no listening port): an 8-byte
little-endian length, then a small envelope ``(tag, ident, blob)`` pickled with
plain pickle. ``blob`` is a payload of :mod:`snakepit._wire.codec` (or None),
decoded separately, so a payload that fails to decode still has an ``ident``
to answer to and never costs the connection.

Supervisor → worker:
  ``(MSG_INIT, slot, (config_blob, ledger_ref))``  first frame after start
  ``(MSG_CALL, call_id, (fn_id, fn_blob | None, args_blob[, trace, session[, spin]]))``
  (``spin`` False: the pool is saturated, or the worker shares its
  caller's CPU; the worker waits for its next call without polling first)
  ``(MSG_SHUTDOWN, 0, None)``
Worker → supervisor:
  ``(MSG_READY, pid, None)``                      initializer done
  ``(MSG_INIT_FAILED, pid, error_record_blob)``   initializer raised
  ``(MSG_RESULT, call_id, (value_blob, python_seconds, cpu))`` (``value_blob``
  of a compact reply may be the number that is the result: see ``_compact``)
  ``(MSG_ERROR, call_id, (error_record_blob, python_seconds, cpu))``
  ``(MSG_EVENT, 0, (event, measurements, metadata))`` telemetry raised in the
  worker, plain values only (forwarded to the supervisor's event bus)
  ``(MSG_LOG, 0, record)``  a ``logging`` record of the worker, plain values
  (logged by the supervisor under the same logger name)
  ``(MSG_RETIRE, 0, (reason, resident_bytes))``  sent before a reply: the
  worker is over its memory limit and asks to be replaced after that reply

``python_seconds`` is the time the worker spent in the called function;
``cpu`` the CPU it answered from (-1: unknown).

The two frames of a plain round trip (a call of a function the worker has,
without trace or session, its arguments one small pickle or flat ones with
shared arrays by position, and its small result) travel compact: struct
fields for the envelope instead of a pickle (``_compact``: :func:`pack_call`,
:func:`pack_flat_call`, :func:`pack_result`, :func:`pack_number_result`);
:func:`unpack` gives the same envelopes for them.
"""

from __future__ import annotations

import contextlib
import mmap
import pickle
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from snakepit import _core

__all__ = [
    "EXIT_INIT_FAILED",
    "MAX_FRAME_BYTES",
    "MSG_CALL",
    "MSG_ERROR",
    "MSG_EVENT",
    "MSG_INIT",
    "MSG_INIT_FAILED",
    "MSG_LOG",
    "MSG_READY",
    "MSG_RESULT",
    "MSG_RETIRE",
    "MSG_SHUTDOWN",
    "Frame",
    "FrameReader",
    "Payload",
    "ProtocolError",
    "SplitFrame",
    "could_be_ctrl_c",
    "interrupt_call",
    "pack",
    "pack_call",
    "pack_flat_call",
    "pack_number_result",
    "pack_result",
    "poll_window",
    "send_frame",
    "unpack",
]

from . import _compact
from ._compact import (
    pack_call,
    pack_flat_call,
    pack_number_result,
    pack_result,
)
from ._messages import (
    MSG_CALL,
    MSG_ERROR,
    MSG_EVENT,
    MSG_INIT,
    MSG_INIT_FAILED,
    MSG_LOG,
    MSG_READY,
    MSG_RESULT,
    MSG_RETIRE,
    MSG_SHUTDOWN,
    ProtocolError,
)

_HEADER = struct.Struct("<Q")
_TABLE = struct.Struct("<IQ")  # buffer count, envelope length
_LENGTH = struct.Struct("<Q")
#: A frame larger than this is refused: big data travels through shared
#: memory, so a huge frame means a bug or a hostile peer.
MAX_FRAME_BYTES = 1 << 31
#: Frames up to this size are joined and sent with one ``send``; larger ones
#: go out as a vector of their parts.
_JOIN_BYTES = 1 << 16
#: Frames up to this size are read through the reader's shared chunk; larger
#: ones get a buffer of their own that grows as their bytes arrive.
_CHUNK_BYTES = 1 << 16
#: First allocation for a large frame's remainder; it then doubles, never
#: beyond what the header announced, so memory follows arrived bytes only.
_FIRST_GROWTH = 1 << 20
#: A large frame's mapping up to this size is kept for the next one.
_SPARE_BYTES = 128 << 20
#: Out-of-band buffers start at multiples of this within a frame.
_ALIGNMENT = 64
#: Set in a buffer's length in the frame table: the buffer is a ``bytes``
#: object's data (see :func:`pack`).
_BYTES_FLAG = 1 << 63
#: A ``bytes`` buffer of a large frame from this size up is received into a
#: ``bytes`` of its own (see :meth:`FrameReader._read_large`). Above what a
#: frame's first reads can hold (a chunk, and what was left of the one
#: before), so that at most its start has arrived with them.
_OWN_BYTES = 1 << 20
#: A pause this long between two polls of a spinning reader means the
#: scheduler gave its core to someone else (a poll takes about a microsecond).
_PREEMPTED_GAP = 30e-6
#: Most waits that sleep at once after spins that did not pay.
_MAX_SPIN_PENALTY = 64
#: Seconds of an expected wait that a poll covers beyond ``spin_seconds``, at most.
MOST_WAIT_POLLED = 0.001


def poll_window(spin_seconds: float, expected: float | None) -> float:
    """How long a reader polls for a frame it expects in ``expected`` seconds.

    ``spin_seconds`` (0: never), plus ``expected`` when that is at most
    :data:`MOST_WAIT_POLLED`: the frame then comes while the reader still
    polls. On the 2-core VM a sleeping reader's wake-up cost 150-250 us:
    a caller waiting for a 300 us call took 481 us with 200 us of polling,
    348-379 us with a poll that covered the call; a worker whose caller
    sends the next call 600 us after each reply answered in 177 us against
    83 us. A longer wait gains too little for the CPU a poll would take:
    the reader polls ``spin_seconds``, and sleeps.
    """
    if spin_seconds <= 0.0:
        return 0.0
    if expected is not None and 0.0 <= expected <= MOST_WAIT_POLLED:
        return spin_seconds + expected
    return spin_seconds


_DONTWAIT = socket.MSG_DONTWAIT
#: Whose involuntary context switches tell that a spinning reader's machine is busy.
_RUSAGE_OF_THIS_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)

#: Exit code a worker uses when its initializer raised.
EXIT_INIT_FAILED = 3

Frame = list[bytes | memoryview]
"""What :func:`pack` returns and :func:`send_frame` sends: the envelope, then
the raw bytes of each out-of-band buffer in it."""


class SplitFrame:
    """A large frame whose ``bytes`` buffers arrived in objects of their own.

    ``frame`` holds the rest at the frame's offsets (never written where an
    owned buffer lies: those pages are never committed), ``owned`` maps a
    buffer's index to its ``bytes``, ``size`` is the frame's length.
    """

    __slots__ = ("frame", "owned", "size")

    def __init__(self, frame: mmap.mmap | memoryview, owned: dict[int, bytes], size: int) -> None:
        self.frame, self.owned, self.size = frame, owned, size


Payload = bytearray | mmap.mmap | memoryview | SplitFrame
"""A received frame's bytes, owned by the caller (large frames are mappings)."""


def send_frame(sock: socket.socket, frame: Frame | bytes) -> None:
    """Send one frame (blocking): header, envelope and blobs, never concatenated
    when large, so the cost is one pass of the kernel over the bytes."""
    parts = [frame] if isinstance(frame, (bytes, bytearray, memoryview)) else frame
    if len(parts) == 1 and type(parts[0]) is bytes and len(parts[0]) <= _JOIN_BYTES:
        sock.sendall(_HEADER.pack(len(parts[0])) + parts[0])  # the common small frame
        return
    views = [memoryview(part).cast("B") for part in parts]
    size = sum(view.nbytes for view in views)
    if size <= _JOIN_BYTES:
        sock.sendall(b"".join([_HEADER.pack(size), *views]))
        return
    views.insert(0, memoryview(_HEADER.pack(size)))
    while views:
        sent = sock.sendmsg(views)
        # A signal can interrupt a blocking send after some of the bytes.
        while sent:
            first = views[0].nbytes
            if sent < first:
                views[0] = views[0][sent:]
                break
            sent -= first
            del views[0]
        while views and not views[0].nbytes:
            del views[0]


class FrameReader:
    """Reads frames from a socket with as few ``recv`` calls as possible.

    Cost is linear in the frame size: small frames come out of a shared
    chunk; a large frame is received straight into a buffer of its own that
    grows geometrically with the bytes that have arrived, and is returned
    without another copy.
    """

    def __init__(self, sock: socket.socket, spin_seconds: float = 0.0) -> None:
        # A frame stream blocks until its frame comes: whatever
        # socket.setdefaulttimeout() gave new sockets, this one has no timeout
        # (which would also make each MSG_DONTWAIT poll wait first).
        sock.settimeout(None)
        self.sock = sock
        self.spin_seconds = spin_seconds
        #: Waits left to sleep in ``recv`` at once, and the next such penalty
        #: (see :meth:`_spin_recv`).
        self.spin_skips = 0
        self.spin_penalty = 1
        #: The last spin missed too (a miss alone costs no back-off).
        self._missed_last = False
        #: Waits that wanted to poll and did not catch their frame by polling
        #: (a miss, a lost core, a back-off): how a busy machine shows here.
        self.polls_lost = 0
        self._switches = -1  # involuntary context switches at the last look
        #: ``poll`` of a poller of the socket, made on the first spin.
        self._poller: Callable[[int], list[tuple[int, int]]] | None = None
        self.buffer = bytearray()
        self._chunk = bytearray(_CHUNK_BYTES)
        self._chunk_view = memoryview(self._chunk)
        self._spare: mmap.mmap | None = None
        #: False while a large frame is half received: an exception then
        #: (an interrupt) loses the frame, and the stream has no next one.
        self.intact = True

    def read(self) -> Payload | None:
        """The next frame's payload; None when the peer closed the connection.

        The payload is a new object that the caller owns.
        """
        buffer = self.buffer
        while len(buffer) < _HEADER.size:
            if not self._fill():
                if buffer:
                    raise ProtocolError("connection closed in the middle of a frame")
                return None
        (size,) = _HEADER.unpack_from(buffer)
        if size > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
        end = _HEADER.size + size
        if size > _CHUNK_BYTES and len(buffer) < end:
            return self._read_large(size)
        while len(buffer) < end:
            if not self._fill():
                raise ProtocolError("connection closed in the middle of a frame")
        payload = buffer[_HEADER.size : end]
        del buffer[:end]
        return payload

    def _fill(self) -> bool:
        """Append what the socket has to the pending bytes; False at EOF."""
        count = -1
        if self.spin_seconds and not self.buffer:
            if self.spin_skips:
                self.spin_skips -= 1
                self.polls_lost += 1
                if not self.spin_skips:
                    # The probe after a back-off is judged by its own spin,
                    # not by switches all through the pause (where one
                    # preemption would start the next pause, and so on).
                    self._switches = -1
            elif self._contended():
                self._spin_missed()
            else:
                count = self._spin_recv()
        if count < 0:
            count = self.sock.recv_into(self._chunk_view)
        self.buffer += self._chunk_view[:count]
        return count > 0

    def _read_large(self, size: int) -> Payload:
        """Receive a large frame into anonymous memory that grows by doubling.

        Growing an anonymous mapping remaps it: nothing is copied or
        zero-filled, and a page is committed only when received bytes land
        in it. The mapping of the last large frame is reused once nothing
        refers to it any more (its pages are warm: no page faults).

        A ``bytes`` buffer of :data:`_OWN_BYTES` or more is received straight
        into a new ``bytes`` object instead, which the decoder hands out as
        it is: that buffer lands in memory once, not in the mapping and then
        in a copy of it (fresh pages cost as much as the copy itself).
        """
        buffer = self.buffer
        self.intact = False
        # Everything pending belongs to this frame (it is not complete yet).
        filled = len(buffer) - _HEADER.size
        spans = self._owned_spans(size, filled)
        frame = self._take_spare()
        if frame is None:
            frame = mmap.mmap(-1, min(size, max(2 * filled, _FIRST_GROWTH)), flags=mmap.MAP_PRIVATE)
            _prefer_huge_pages(frame)
        ahead = min(filled, spans[0][1]) if spans else filled
        if ahead > len(frame):
            frame.resize(min(size, max(ahead, 2 * len(frame))))
        frame[:ahead] = memoryview(buffer)[_HEADER.size : _HEADER.size + ahead]
        owned: dict[int, bytes] = {}
        position = ahead
        try:
            for index, start, length in spans:
                frame = self._receive_into(frame, position, start, size)
                # Its start may have come with the frame's first bytes (a
                # copy of those: less than a chunk).
                arrived = buffer[_HEADER.size + start : _HEADER.size + filled]
                try:
                    data = _core.recv_bytes(self.sock.fileno(), length, arrived)
                except _core.CoreError as exc:
                    # The stream itself failed (reset, closed): it is lost.
                    raise ProtocolError(f"cannot receive a frame: {exc}") from exc
                if data is None:
                    raise ProtocolError("connection closed in the middle of a frame")
                owned[index] = data
                position = start + length
            del buffer[:]
            frame = self._receive_into(frame, position, size, size)
        except BaseException:
            with contextlib.suppress(BufferError):
                frame.close()
            raise
        if len(frame) <= _SPARE_BYTES:
            self._spare = frame
        self.intact = True
        received = memoryview(frame)[:size] if len(frame) > size else frame
        return SplitFrame(received, owned, size) if owned else received

    def _receive_into(self, frame: mmap.mmap, position: int, end: int, size: int) -> mmap.mmap:
        """Receive the frame's bytes ``[position, end)`` into ``frame``, grown
        (by doubling, never beyond ``size``) as they arrive."""
        while position < end:
            if position >= len(frame):
                frame.resize(min(size, max(2 * len(frame), position + _FIRST_GROWTH)))
                _prefer_huge_pages(frame)
            count = self.sock.recv_into(memoryview(frame)[position : min(end, len(frame))])
            if count == 0:
                raise ProtocolError("connection closed in the middle of a frame")
            position += count
        return frame

    def _owned_spans(self, size: int, filled: int) -> list[tuple[int, int, int]]:
        """``(index, start, length)`` of each ``bytes`` buffer of the frame
        whose length ``size`` arrived with a start of ``filled`` bytes, from
        :data:`_OWN_BYTES` up; none where those bytes do not hold the whole
        table or it does not fit the frame (:func:`unpack` says what is wrong)."""
        buffer = self.buffer
        if filled < _TABLE.size:
            return []
        count, envelope_size = _TABLE.unpack_from(buffer, _HEADER.size)
        if count == 0 or _TABLE.size + count * _LENGTH.size > filled:
            return []
        spans = []
        for index, start, length, is_bytes in _table_spans(
            buffer, _HEADER.size, count, envelope_size
        ):
            if start + length > size:
                return []
            if is_bytes and length >= _OWN_BYTES and start + length > filled:
                spans.append((index, start, length))
        return spans

    def _take_spare(self) -> mmap.mmap | None:
        spare, self._spare = self._spare, None
        # Referenced only here and by getrefcount's argument: no payload,
        # blob or array still uses it.
        if spare is not None and sys.getrefcount(spare) == 2:
            return spare
        return None

    def _spin_recv(self) -> int:
        """Poll for the next frame for a moment before sleeping in ``recv``.

        Waking a blocked process costs tens of microseconds; a worker that
        polls briefly after answering catches the next call of a busy caller
        at once. Returns -1 if nothing came within ``spin_seconds``.

        Spinning only pays while it catches the next frame on a core nobody
        else wants. A spin that ends empty, or that lost its core meanwhile
        (a gap between two polls: the scheduler ran someone else, so the
        machine is oversubscribed and the spin delays the very peer it waits
        for), is a miss. A miss right after a miss makes the next
        ``spin_penalty`` waits sleep at once, and the penalty doubles up to
        :data:`_MAX_SPIN_PENALTY`; a catch resets it. (A miss alone is a
        pause between two bursts of calls: backing off there would make the
        second call of each burst wake a sleeping process.) An involuntary
        context switch of this thread since the last look
        (:meth:`_contended`) counts as a miss too: spinning on a machine
        without an idle core takes CPU from others, the caller's threads
        included. A busy
        machine thus costs one probe spin per that many waits; the probe is
        judged by its own spin, not by a preemption during the pause.
        """
        # poll(2) with no timeout looks without a failed recv per look: each
        # of those raised BlockingIOError, and building it (its strerror,
        # decoded from the locale) cost three times the look itself.
        ready = self._poller
        if ready is None:
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
            ready = self._poller = poller.poll
        clock = time.perf_counter
        now = clock()
        deadline = now + self.spin_seconds
        while not ready(0):
            last, now = now, clock()
            if now >= deadline or now - last >= _PREEMPTED_GAP:
                self._spin_missed()
                return -1
        if clock() - now < _PREEMPTED_GAP:
            self.spin_penalty = 1
            self._missed_last = False
        else:
            self._spin_missed()
        try:
            # Ready: bytes, the end of the stream or its error, at once.
            return self.sock.recv_into(self._chunk_view, 0, _DONTWAIT)
        except BlockingIOError:
            return -1  # nothing after all: the caller's recv waits

    def _contended(self) -> bool:
        """Whether this thread lost its core to another since the last look.

        An involuntary context switch means some other task was waiting for
        a CPU: spinning now would take that CPU from it (often from the very
        caller whose next call the spin waits for). The thread's own count,
        so that a call's worker threads (a BLAS pool) do not stop the spin.
        """
        switches = resource.getrusage(_RUSAGE_OF_THIS_THREAD).ru_nivcsw
        contended = switches != self._switches and self._switches >= 0
        self._switches = switches
        return contended

    def _spin_missed(self) -> None:
        self.polls_lost += 1
        if not self._missed_last:
            # One miss after a catch is a pause in the calls, or a peer that
            # slept through it: the next burst polls from its first frame.
            # Only a second miss in a row starts backing off.
            self._missed_last = True
            return
        self.spin_skips = self.spin_penalty
        self.spin_penalty = min(2 * self.spin_penalty, _MAX_SPIN_PENALTY)


def interrupt_call(signum: int, frame: object) -> None:
    """A worker's SIGINT handler: ``Pool.cancel`` interrupts the running call.

    Not a Ctrl-C (a worker runs in a session of its own): decoding code that
    catches a KeyboardInterrupt here treats it as bad data, as in a worker
    that ignores SIGINT.
    """
    raise KeyboardInterrupt("the call was cancelled (Pool.cancel)")


def could_be_ctrl_c() -> bool:
    """Whether a KeyboardInterrupt raised here may be the user's Ctrl-C (the
    main thread, SIGINT not ignored nor a worker's :func:`interrupt_call`),
    rather than one that hostile data raised while being unpickled."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(
        signal.SIGINT
    ) not in (signal.SIG_IGN, interrupt_call)


def _prefer_huge_pages(frame: mmap.mmap) -> None:
    """Ask for transparent huge pages: a page fault per 2 MiB, not per 4 KiB,
    halves the cost of landing a large frame in fresh memory."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        with contextlib.suppress(OSError):
            frame.madvise(advice)


def pack(tag: str, ident: int, blob: Any, *, inband: bool = False) -> Frame:
    """One frame's parts: the envelope ``(tag, ident, blob)``, then the raw
    bytes of every ``pickle.PickleBuffer`` in it (never copied here).

    ``inband``: the sender knows ``blob`` holds no ``PickleBuffer`` (a call's
    or a reply's small pickle): the envelope is pickled without a buffer
    callback, which costs a small frame's pickling about half its time. (A
    buffer there anyway would be copied into the envelope, not lost.)

    Layout after the frame header: a u32 count ``n`` of out-of-band buffers,
    the u64 length of the envelope, ``n`` u64 lengths, the pickled envelope,
    then the buffers, each at an offset that is a multiple of 64 (so arrays
    over them are aligned).
    """
    if inband:
        envelope = pickle.dumps((tag, ident, blob), protocol=5)
        return [_TABLE.pack(0, len(envelope)) + envelope]
    buffers: list[pickle.PickleBuffer] = []
    envelope = pickle.dumps((tag, ident, blob), protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return [_TABLE.pack(0, len(envelope)) + envelope]
    raws = [item.raw() for item in buffers]
    table = _TABLE.pack(len(raws), len(envelope))
    # A ``bytes`` object's buffer is flagged: the reader may receive it into
    # a ``bytes`` of its own, which decodes without a copy.
    table += b"".join(
        _LENGTH.pack(raw.nbytes | _BYTES_FLAG if type(raw.obj) is bytes else raw.nbytes)
        for raw in raws
    )
    parts: Frame = [table + envelope]
    offset = len(parts[0])
    for raw in raws:
        padding = -offset % _ALIGNMENT
        if padding:
            parts.append(bytes(padding))
        parts.append(raw)
        offset += padding + raw.nbytes
    return parts


def unpack(payload: Payload | bytes | memoryview) -> tuple[str, int, Any]:
    """Open an envelope, checking its shape; ProtocolError if malformed.

    Out-of-band buffers come back as memoryviews into ``payload`` (no copy).
    """
    # Nothing more for the common frame than a type check.
    owned: dict[int, bytes] | None = None
    size: int | None = None
    if isinstance(payload, SplitFrame):
        data: bytearray | mmap.mmap | memoryview | bytes = payload.frame
        owned, size = payload.owned, payload.size
    else:
        data = payload
    try:
        count, envelope_size = _TABLE.unpack_from(data)
        if count == 0:  # the common frame: no out-of-band buffers
            if _TABLE.size + envelope_size != len(data) or owned:
                raise ProtocolError("frame length disagrees with its table")
            envelope = pickle.loads(memoryview(data)[_TABLE.size :])
        elif count >= _compact.LOWEST_MARK:
            if owned:
                raise ProtocolError("a compact frame with buffers received apart")
            return _compact.unpack(data, count)
        else:
            view = memoryview(data).cast("B")
            envelope = _unpack_with_buffers(view, count, envelope_size, owned, size)
    except ProtocolError:
        raise
    except BaseException as exc:
        # Even an envelope that unpickles into a raised SystemExit is only
        # a malformed frame.
        if isinstance(exc, KeyboardInterrupt) and could_be_ctrl_c():
            raise
        raise ProtocolError(f"undecodable frame: {type(exc).__name__}: {exc}") from exc
    if (
        type(envelope) is not tuple
        or len(envelope) != 3
        or type(envelope[0]) is not str
        or type(envelope[1]) is not int
    ):
        raise ProtocolError(f"malformed envelope {type(envelope).__name__}")
    return envelope


def _table_spans(
    data: Any, base: int, count: int, envelope_size: int
) -> Iterator[tuple[int, int, int, bool]]:
    """``(index, start, length, is_bytes)`` of each out-of-band buffer a frame
    table announces (``data[base:]`` is the frame; offsets are the frame's)."""
    offset = _TABLE.size + count * _LENGTH.size + envelope_size
    for index in range(count):
        (length,) = _LENGTH.unpack_from(data, base + _TABLE.size + index * _LENGTH.size)
        offset += -offset % _ALIGNMENT
        yield index, offset, length & ~_BYTES_FLAG, bool(length & _BYTES_FLAG)
        offset += length & ~_BYTES_FLAG


def _unpack_with_buffers(
    view: memoryview,
    count: int,
    envelope_size: int,
    owned: dict[int, bytes] | None,
    size: int | None,
) -> Any:
    """The envelope of a frame with ``count`` out-of-band buffers; ``owned``
    (of a :class:`SplitFrame` of ``size`` bytes) those that arrived apart."""
    start = _TABLE.size
    envelope_start = start + count * _LENGTH.size
    if envelope_start + envelope_size > len(view):
        raise ProtocolError("frame is shorter than its table announces")
    total = len(view) if size is None else size
    buffers: list[memoryview | bytes] = []
    offset = envelope_start + envelope_size
    for index, offset, length, _ in _table_spans(view, 0, count, envelope_size):
        apart = owned.get(index) if owned else None
        if apart is not None:
            if len(apart) != length:
                raise ProtocolError("a buffer received apart disagrees with the table")
            buffers.append(apart)
        elif offset + length > len(view):
            raise ProtocolError("frame is shorter than the buffers it announces")
        else:
            buffers.append(view[offset : offset + length])
        offset += length
    if offset != total:
        raise ProtocolError(f"frame has {total - offset} bytes beyond its buffers")
    return pickle.loads(view[envelope_start : envelope_start + envelope_size], buffers=buffers)
