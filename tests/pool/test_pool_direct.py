"""``Pool.call`` reads its own reply from an idle worker (see snakepit/pool/_direct.py).

Each test checks what a reader thread used to guarantee still holds when the
caller's thread reads instead: faults are classified, an idle worker is still
heard (its logs, its death), shutdown does not hang, and an interrupt loses
nothing but the interrupted call.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import snakepit
from snakepit._wire import protocol
from snakepit.errors import (
    CallCancelledError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool import _direct
from snakepit.pool._watch import ProcessWatcher

from . import _direct_tasks, _tasks

pytestmark = pytest.mark.skipif(
    not ProcessWatcher.supported(), reason="callers read their own replies only with pidfd+epoll"
)


@pytest.fixture
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, terminate_grace=0.3) as pool:
        yield pool


def _reading_threads(pool: snakepit.Pool) -> list[str]:
    """Record the name of the thread that handles each reply from now on."""
    supervisor = pool._supervisor
    names: list[str] = []
    original = supervisor.worker_reply

    def worker_reply(*args: Any) -> None:
        names.append(threading.current_thread().name)
        original(*args)

    supervisor.worker_reply = worker_reply  # type: ignore[method-assign]
    return names


def _eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_call_reads_its_reply_on_its_own_thread(pool: snakepit.Pool) -> None:
    names = _reading_threads(pool)
    assert [pool.call(_tasks.add, i, 1) for i in range(50)] == list(range(1, 51))
    assert names == [threading.current_thread().name] * 50


def test_submit_is_read_by_the_reader_thread(pool: snakepit.Pool) -> None:
    names = _reading_threads(pool)
    assert pool.submit(_tasks.add, 1, 2).result(timeout=10) == 3
    assert pool.options(timeout=5).call(_tasks.add, 2, 2) == 4
    assert names[0].startswith("snakepit-reader-")
    assert names[1] == threading.current_thread().name


def test_a_queued_call_is_handed_its_reply_to_read() -> None:
    with snakepit.Pool(workers=1) as pool:
        names = _reading_threads(pool)
        first = threading.Thread(target=pool.call, args=(time.sleep, 0.4), name="first-caller")
        first.start()
        assert _eventually(lambda: pool.stats()["busy"] == 1)
        assert pool.call(_tasks.add, 2, 5) == 7  # queued behind the sleep
        first.join(timeout=10)
    assert names == ["first-caller", threading.current_thread().name]


def test_a_queued_calls_result_is_freed_by_reference_counting() -> None:
    # A future that referred to its call (through the waiter's callback)
    # kept every result, shared arrays and their mappings included, alive
    # until the garbage collector ran.
    with snakepit.Pool(workers=1) as pool:
        busy = pool.submit(time.sleep, 0.3)
        assert _eventually(lambda: pool.stats()["busy"] == 1)
        gc.disable()
        try:
            result = pool.call(_tasks.shared_result, 1 << 16)  # queued behind the sleep
            assert result[7] == 7.0
            alive = weakref.ref(result)
            del result
            assert alive() is None
        finally:
            gc.enable()
        busy.result(timeout=10)


def test_an_interrupt_while_queued_loses_no_stream() -> None:
    with snakepit.Pool(workers=1) as pool:
        names = _reading_threads(pool)
        busy = pool.submit(time.sleep, 0.5)
        assert _eventually(lambda: pool.stats()["busy"] == 1)
        _interrupt_main_after(0.2)
        with pytest.raises(KeyboardInterrupt):
            pool.call(_tasks.add, 1, 1)  # interrupted while it waits in the queue
        busy.result(timeout=10)
        assert _eventually(lambda: pool.stats()["completed"] == 2)
        assert [pool.call(_tasks.add, i, 1) for i in range(3)] == [1, 2, 3]
    assert names[:2] == ["snakepit-reader-0"] * 2


def test_calls_from_many_threads_mixed_with_submits(pool: snakepit.Pool) -> None:
    def work(offset: int) -> list[int]:
        out = []
        for i in range(150):
            if i % 3:
                out.append(pool.call(_tasks.add, offset, i))
            else:
                out.append(pool.submit(_tasks.add, offset, i).result(timeout=30))
        return out

    results: dict[int, list[int]] = {}
    threads = [
        threading.Thread(target=lambda k=k: results.__setitem__(k, work(1000 * k)))
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert {k: v for k, v in results.items()} == {
        k: [1000 * k + i for i in range(150)] for k in range(4)
    }
    assert pool.stats()["completed"] == 600


@pytest.mark.parametrize(
    ("fn", "kind"),
    [(_tasks.segfault, "segfault"), (_tasks.abort, "abort"), (os._exit, "exit")],
)
def test_a_crash_during_a_call_is_classified_and_replaced(
    pool: snakepit.Pool, fn: Callable[..., Any], kind: str
) -> None:
    args = (7,) if fn is os._exit else ()
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(fn, *args)
    assert info.value.exit_kind == kind
    assert [pool.call(_tasks.add, i, i) for i in range(10)] == [2 * i for i in range(10)]


def test_a_timeout_during_a_call(pool: snakepit.Pool) -> None:
    with pytest.raises(WorkerTimeoutError):
        pool.options(timeout=0.3).call(time.sleep, 10)
    assert pool.call(_tasks.add, 1, 1) == 2


def test_an_idle_worker_is_still_heard(
    pool: snakepit.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert pool.call(_direct_tasks.log_later, 0.3, "said while idle") == 1
    assert _eventually(lambda: any(r.getMessage() == "said while idle" for r in caplog.records))
    assert pool.call(_tasks.add, 2, 3) == 5


@pytest.mark.parametrize("delay", [0.0, 0.001], ids=["at-once", "before-armed"])
def test_a_worker_heard_right_after_its_reply(
    pool: snakepit.Pool, caplog: pytest.LogCaptureFixture, delay: float
) -> None:
    # Said before the monitor arms the idle worker's socket (see ARM_AFTER).
    caplog.set_level(logging.WARNING)
    assert pool.call(_direct_tasks.log_later, delay, "said at once") == 1
    assert _eventually(lambda: any(r.getMessage() == "said at once" for r in caplog.records))


def test_a_worker_killed_right_after_its_reply_is_replaced(pool: snakepit.Pool) -> None:
    victim = pool.call(_tasks.pid)
    os.kill(victim, signal.SIGKILL)  # before its socket is armed again
    assert _eventually(lambda: pool.stats()["crashes"] == 1)
    assert _eventually(lambda: len(pool.worker_pids()) == 2 and victim not in pool.worker_pids())
    assert [pool.call(_tasks.add, i, 0) for i in range(6)] == list(range(6))


def test_calls_one_after_another_leave_the_socket_unarmed(pool: snakepit.Pool) -> None:
    supervisor = pool._supervisor
    watcher = supervisor._watcher
    arms: list[int] = []
    original = watcher.arm

    def counting(fd: int, on_readable: Callable[[], None]) -> bool:
        arms.append(fd)
        return original(fd, on_readable)

    watcher.arm = counting  # type: ignore[method-assign]
    calls = 200
    started = time.monotonic()
    for i in range(calls):
        assert pool.call(_tasks.add, i, 1) == i + 1
    took = time.monotonic() - started
    # At most one arming per monitor pass (every ARM_AFTER seconds), not one per call.
    assert len(arms) <= 2 * (took / _direct.ARM_AFTER + 1), (len(arms), took)
    assert len(arms) < calls
    channels = [h.channel for h in supervisor.handles if h.channel is not None]
    assert _eventually(lambda: all(c.reads == "nobody" and c.armed for c in channels))


def test_an_idle_worker_killed_from_outside_is_replaced(pool: snakepit.Pool) -> None:
    for _ in range(5):
        pool.call(_tasks.add, 1, 1)
    victim = pool.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert _eventually(lambda: pool.stats()["crashes"] == 1)
    assert _eventually(lambda: len(pool.worker_pids()) == 2 and victim not in pool.worker_pids())
    assert [pool.call(_tasks.add, i, 0) for i in range(6)] == list(range(6))


@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_with_idle_workers_ends_every_reader(wait: bool) -> None:
    pool = snakepit.Pool(workers=2)
    for i in range(20):
        pool.call(_tasks.add, i, 1)
    started = time.monotonic()
    pool.shutdown(wait=wait)
    assert _eventually(
        lambda: not any(t.name.startswith("snakepit-reader-") for t in threading.enumerate())
    )
    assert time.monotonic() - started < 8.0


def test_shutdown_from_another_thread_ends_a_waiting_call() -> None:
    pool = snakepit.Pool(workers=1, terminate_grace=0.2)
    try:
        threading.Timer(0.3, pool.shutdown, kwargs={"wait": False}).start()
        with pytest.raises(WorkerUnavailableError):
            pool.call(time.sleep, 20)
    finally:
        pool.shutdown()


def _interrupt_main_after(delay: float) -> threading.Timer:
    timer = threading.Timer(
        delay, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT)
    )
    timer.start()
    return timer


def test_an_interrupt_between_frames_leaves_the_call_running(pool: snakepit.Pool) -> None:
    names = _reading_threads(pool)
    _interrupt_main_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        pool.call(time.sleep, 0.6)
    # The call went on: its reply is read by the reader thread, no crash.
    assert _eventually(lambda: pool.stats()["completed"] == 1)
    assert names[-1].startswith("snakepit-reader-")
    assert pool.stats()["crashes"] == 0
    assert [pool.call(_tasks.add, i, 1) for i in range(4)] == [1, 2, 3, 4]


class _InterruptingSocket:
    """A test double around a worker's socket: ``recv_into`` raises
    KeyboardInterrupt once, after ``after`` bytes of a large frame came."""

    def __init__(self, sock: socket.socket, after: int) -> None:
        self._sock = sock
        self._left = after

    def recv_into(self, buffer: Any, *args: Any) -> int:
        if self._left <= 0:
            self._left = 1 << 62
            raise KeyboardInterrupt
        count = self._sock.recv_into(buffer, *args)
        self._left -= count
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _interrupting_recv_bytes(after: int) -> Callable[..., Any]:
    """A test double of ``_core.recv_bytes``: receives ``after`` bytes of the
    buffer for real, then raises KeyboardInterrupt (as a Ctrl-C would)."""
    real = protocol._core.recv_bytes

    def recv_bytes(fd: int, size: int, prefix: Any) -> bytes | None:
        real(fd, after, prefix)
        raise KeyboardInterrupt

    return recv_bytes


@pytest.mark.parametrize("result", ["bytearray", "bytes"])
def test_an_interrupt_in_the_middle_of_a_frame_cancels_the_call(
    result: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bytearray arrives in the frame's mapping, a large bytes in an object
    # of its own: an interrupt in either loses only that call.
    with snakepit.Pool(workers=1, terminate_grace=0.2) as pool:
        assert pool.call(_tasks.add, 1, 1) == 2
        handle = pool._supervisor.handles[0]
        assert handle.channel is not None
        frames = handle.channel.frames
        if result == "bytearray":
            frames.sock = _InterruptingSocket(frames.sock, 4 << 20)  # type: ignore[assignment]
            task: Callable[[int], Any] = _direct_tasks.big_bytearray
        else:
            monkeypatch.setattr(protocol._core, "recv_bytes", _interrupting_recv_bytes(4 << 20))
            task = _direct_tasks.big_bytes
        with pytest.raises(KeyboardInterrupt):
            pool.call(task, 32 << 20)
        monkeypatch.undo()
        assert _eventually(lambda: pool.stats()["cancelled"] == 1)
        assert pool.stats()["crashes"] == 0
        assert len(pool.call(_direct_tasks.big_bytes, 1 << 20)) == 1 << 20


def test_a_cancelled_call_is_not_read_by_its_caller(pool: snakepit.Pool) -> None:
    # ``submit`` then ``cancel`` takes the reader thread's way; a call made
    # meanwhile on the other worker reads its own reply.
    future = pool.submit(time.sleep, 10)
    assert _eventually(lambda: future.running())
    assert pool.call(_tasks.add, 3, 4) == 7
    assert pool.cancel(future)
    with pytest.raises(CallCancelledError):
        future.result(timeout=10)
    assert [pool.call(_tasks.add, i, 2) for i in range(4)] == [2, 3, 4, 5]


def test_large_bytes_results_arrive_whole_whoever_reads_them(pool: snakepit.Pool) -> None:
    """Results of 1 MiB and more arrive in bytes of their own: exact, through
    the caller's own read and the reader thread's, one after another."""
    sizes = [(1 << 20) - 1, 1 << 20, (5 << 20) + 3, 17 << 20]
    for seed, size in enumerate(sizes):
        expected = random.Random(seed).randbytes(size)
        assert pool.call(_direct_tasks.seeded_bytes, size, seed) == expected
        future = pool.submit(_direct_tasks.seeded_bytes, size, seed)
        assert future.result(timeout=30) == expected
    assert pool.stats()["crashes"] == 0


@pytest.mark.parametrize("way", ["call", "submit"])
def test_a_worker_killed_in_the_middle_of_a_large_bytes_result(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while its result's bytes are half received (by the caller, or
    by the reader thread): that call fails as a crash, the worker is
    replaced, nothing waits for the rest."""
    real = protocol._core.recv_bytes

    with snakepit.Pool(workers=1) as pool:
        (pid,) = pool.worker_pids()

        def recv_bytes(fd: int, size: int, prefix: Any) -> bytes | None:
            # A test double: half of the buffer for real, then the kill.
            head = real(fd, size // 2, prefix)
            os.kill(pid, signal.SIGKILL)
            rest = real(fd, size - size // 2, b"")
            return None if head is None or rest is None else head + rest

        monkeypatch.setattr(protocol._core, "recv_bytes", recv_bytes)

        def run() -> Any:
            if way == "call":
                return pool.call(_direct_tasks.big_bytes, 32 << 20)
            return pool.submit(_direct_tasks.big_bytes, 32 << 20).result(timeout=30)

        with pytest.raises(WorkerCrashedError):
            run()
        monkeypatch.undo()
        assert pool.call(_direct_tasks.seeded_bytes, 3 << 20, 7) == random.Random(7).randbytes(
            3 << 20
        )
        assert pool.worker_pids() != [pid]
