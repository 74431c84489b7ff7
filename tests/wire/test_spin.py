"""A spinning FrameReader backs off when its spins do not pay (issue 13).

Spinning helps only while it catches the next frame on a core nobody else
wants; a spin that ends empty, or that lost its core meanwhile, right after
another such miss makes the next waits sleep in ``recv`` at once, for a
doubling number of waits. One miss alone (a pause between bursts of calls)
costs nothing.
"""

from __future__ import annotations

import itertools
import socket
import threading

import pytest

from snakepit._wire import protocol


def _frame(ident: int) -> bytes:
    return b"".join(bytes(part) for part in protocol.pack(protocol.MSG_RESULT, ident, None))


class _CountingReader(protocol.FrameReader):
    """Counts the spins it starts; sees no contention unless told."""

    spins = 0
    contended = False

    def _spin_recv(self) -> int:
        self.spins += 1
        return super()._spin_recv()

    def _contended(self) -> bool:
        return self.contended


def _steady_reader(sock: socket.socket, monkeypatch: pytest.MonkeyPatch) -> _CountingReader:
    """A reader spinning 200 µs on a clock that ticks a microsecond per
    reading: no poll looks preempted, however loaded the machine."""
    ticks = iter(range(1_000_000))
    monkeypatch.setattr(protocol.time, "perf_counter", lambda: next(ticks) * 1e-6)
    return _CountingReader(sock, spin_seconds=0.0002)


def test_an_empty_spin_makes_the_next_waits_sleep_and_doubles(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    reader = _CountingReader(right, spin_seconds=0.0005)
    assert reader._spin_recv() == -1  # nothing came: a miss, alone so far
    assert (reader.spin_skips, reader.spin_penalty) == (0, 1)
    assert reader._spin_recv() == -1  # a second in a row
    assert (reader.spin_skips, reader.spin_penalty) == (1, 2)
    reader.spins = 0
    for ident in range(3):
        protocol.send_frame(left, _frame(ident))
    # The first read sleeps in recv at once (the penalty of one wait).
    assert bytes(reader.read() or b"") == _frame(0)
    assert reader.spins == 0
    assert bytes(reader.read() or b"") == _frame(1)
    assert reader.spins == 0  # already buffered: no wait at all
    assert reader.spin_skips == 0


def test_penalty_doubles_up_to_its_cap_and_a_catch_resets_it(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    left, right = pair
    reader = _steady_reader(right, monkeypatch)
    for _ in range(10):
        reader.spin_skips = 0
        assert reader._spin_recv() == -1
    assert reader.spin_penalty == protocol._MAX_SPIN_PENALTY
    assert reader.spin_skips == protocol._MAX_SPIN_PENALTY
    reader.spin_skips = 0
    protocol.send_frame(left, _frame(1))
    assert bytes(reader.read() or b"") == _frame(1)  # caught by the spin
    assert (reader.spin_skips, reader.spin_penalty) == (0, 1)


def test_a_spin_that_lost_its_core_stops_at_once(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, right = pair
    reader = protocol.FrameReader(right, spin_seconds=10.0)
    ticks = iter(range(1_000_000))
    polls = 0

    def clock() -> float:
        # Each reading 1 ms after the last: as if descheduled between polls.
        nonlocal polls
        polls += 1
        return next(ticks) * 1e-3

    monkeypatch.setattr(protocol.time, "perf_counter", clock)
    reader._missed_last = True  # the spin before missed too
    assert reader._spin_recv() == -1
    # Long before its 10 s budget: the first gap ended it.
    assert polls <= 3
    assert reader.spin_skips == 1
    assert right.getblocking()


def test_skipped_spins_still_block_for_the_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    reader = _CountingReader(right, spin_seconds=0.0005)
    reader.spin_skips = 5
    protocol.send_frame(left, _frame(9))
    assert bytes(reader.read() or b"") == _frame(9)
    assert reader.spins == 0
    assert reader.spin_skips == 4
    left.close()
    assert reader.read() is None


def test_one_miss_alone_costs_no_back_off(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pause between two bursts of calls: the spin waiting through it ends
    # empty, and the next burst still polls from its first frame.
    left, right = pair
    reader = _steady_reader(right, monkeypatch)
    assert reader._spin_recv() == -1
    reader.spins = 0
    protocol.send_frame(left, _frame(1))
    assert bytes(reader.read() or b"") == _frame(1)
    assert reader.spins == 1  # it polled, and caught the frame
    assert (reader.spin_skips, reader.spin_penalty) == (0, 1)
    # A catch ends the streak: the next miss is alone again.
    assert reader._spin_recv() == -1
    assert reader.spin_skips == 0
    assert reader._spin_recv() == -1
    assert reader.spin_skips == 1


def _count_spins(reader: protocol.FrameReader, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``reader``'s spins from now on (a real FrameReader, spinning as usual)."""
    spins = [0]
    real_spin = reader._spin_recv

    def counting_spin() -> int:
        spins[0] += 1
        return real_spin()

    monkeypatch.setattr(reader, "_spin_recv", counting_spin)
    return spins


class _Usage:
    def __init__(self, switches: int) -> None:
        self.ru_nivcsw = switches


def test_a_process_that_lost_its_core_does_not_spin(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    left, right = pair
    switches = iter([5, 5, 6, 6])  # preempted once between the 2nd and 3rd look
    monkeypatch.setattr(protocol.resource, "getrusage", lambda who: _Usage(next(switches)))
    reader = protocol.FrameReader(right, spin_seconds=0.0005)
    assert not reader._contended()  # the first look only takes the count
    assert not reader._contended()
    reader._missed_last = True  # the spin before missed
    spins = _count_spins(reader, monkeypatch)
    protocol.send_frame(left, _frame(3))
    assert bytes(reader.read() or b"") == _frame(3)
    assert spins[0] == 0  # contended: slept in recv at once
    assert (reader.spin_skips, reader.spin_penalty) == (1, 2)


def test_a_preemption_during_a_back_off_does_not_extend_it(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Judged against the count from before the pause, any preemption while
    # the back-off lasted would start the next one: spinning would stop for
    # good on a machine that is only sometimes busy.
    left, right = pair
    switches = iter([5, 9, 9])  # preempted while the waits slept at once
    monkeypatch.setattr(protocol.resource, "getrusage", lambda who: _Usage(next(switches)))
    reader = protocol.FrameReader(right, spin_seconds=0.0005)
    assert not reader._contended()  # the count before the back-off
    reader.spin_skips = 2
    spins = _count_spins(reader, monkeypatch)
    for ident in (1, 2):
        protocol.send_frame(left, _frame(ident))
        assert bytes(reader.read() or b"") == _frame(ident)
    assert spins[0] == 0  # the back-off
    protocol.send_frame(left, _frame(3))
    assert bytes(reader.read() or b"") == _frame(3)
    assert spins[0] == 1  # the probe spun: judged by its own spin


@pytest.mark.parametrize("spin_seconds", [0.0, 0.0005])
def test_a_default_socket_timeout_does_not_reach_the_frame_stream(spin_seconds: float) -> None:
    # User code may set a process-wide default before a pool makes its sockets.
    socket.setdefaulttimeout(0.05)
    try:
        left, right = socket.socketpair()
    finally:
        socket.setdefaulttimeout(None)
    with left, right:
        assert right.gettimeout() == 0.05
        reader = protocol.FrameReader(right, spin_seconds=spin_seconds)
        frame = protocol.pack(protocol.MSG_RESULT, 7, None)
        timer = threading.Timer(0.3, protocol.send_frame, (left, frame))
        timer.start()
        try:
            # Waits past the default timeout for its frame, spinning first or not.
            payload = reader.read()
        finally:
            timer.join()
        assert payload is not None
        assert protocol.unpack(payload)[1] == 7
        assert right.gettimeout() is None


def test_a_frame_that_arrives_while_the_reader_spins_is_caught_by_the_spin(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    left, right = pair
    caught: list[int] = []
    # A microsecond per reading: the sender thread taking the GIL between
    # two looks does not look like a lost core.
    ticks = itertools.count()
    monkeypatch.setattr(protocol.time, "perf_counter", lambda: next(ticks) * 1e-6)

    class _Reader(_CountingReader):
        def _spin_recv(self) -> int:
            caught.append(super()._spin_recv())
            return caught[-1]

    reader = _Reader(right, spin_seconds=5.0)
    sender = threading.Timer(0.002, protocol.send_frame, (left, _frame(4)))
    sender.start()
    try:
        assert bytes(reader.read() or b"") == _frame(4)
    finally:
        sender.join()
    # The spin's own recv took the bytes (not the blocking recv after it).
    assert caught == [len(_frame(4)) + 8]
    assert right.getblocking()


def test_the_end_of_the_stream_during_a_spin_is_the_end(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    reader = _CountingReader(right, spin_seconds=5.0)
    closer = threading.Timer(0.002, left.close)
    closer.start()
    try:
        assert reader.read() is None
    finally:
        closer.join()
    assert reader.spins == 1


def test_a_spin_looks_without_a_failed_recv_per_look(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each look is a poll: a recv that fails (BlockingIOError, whose
    message is decoded from the locale each time) cost three times more."""
    _, right = pair
    reader = _steady_reader(right, monkeypatch)
    receives = 0

    class _Counting(socket.socket):
        def recv_into(self, *args: object, **kwargs: object) -> int:
            nonlocal receives
            receives += 1
            return super().recv_into(*args, **kwargs)  # type: ignore[arg-type]

    reader.sock = _Counting(fileno=socket.dup(right.fileno()))
    try:
        assert reader._spin_recv() == -1  # 200 looks, nothing came
    finally:
        reader.sock.close()
    assert receives == 0
