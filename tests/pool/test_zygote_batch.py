"""A pool's first workers are asked of the template together, and each
request is answered by the worker that serves its own socket."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import psutil
import pytest

import snakepit
from snakepit.pool import _handle, _zygote
from snakepit.pool._zygote import ForkedProcess, Zygote
from tests.pool import _tasks

pytestmark = pytest.mark.skipif(not _zygote.supported(), reason="templates fork on Linux only")


class _Ends:
    """Socket pairs and fault logs for forked workers, closed at the end."""

    def __init__(self) -> None:
        self.opened: list[tuple[socket.socket, socket.socket, IO[bytes]]] = []

    def make(self, count: int) -> list[tuple[socket.socket, socket.socket, IO[bytes]]]:
        for _ in range(count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self.opened.append((ours, theirs, log))
        return self.opened[-count:]

    def close(self) -> None:
        for ends in self.opened:
            for end in ends:
                end.close()


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    template = Zygote("test-batch", dict(os.environ), ())
    try:
        yield template
    finally:
        template.close()


@pytest.fixture
def ends() -> Iterator[_Ends]:
    made = _Ends()
    try:
        yield made
    finally:
        made.close()


def _socket_inodes(pid: int) -> set[int]:
    """The socket inodes among a process's open descriptors."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _served_by(forked: ForkedProcess, theirs: socket.socket) -> bool:
    return os.fstat(theirs.fileno()).st_ino in _socket_inodes(forked.pid)


def _requests(made: list[tuple[socket.socket, socket.socket, IO[bytes]]]) -> list[Any]:
    return [(dict(os.environ), theirs.fileno(), log.fileno()) for _, theirs, log in made]


@pytest.mark.parametrize("count", [1, 3, 11], ids=["one", "a few", "more than ahead"])
def test_each_request_is_answered_by_the_worker_on_its_socket(
    zygote: Zygote, ends: _Ends, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_zygote, "_AHEAD", 4)  # 11 requests: three batches
    made = ends.make(count)
    forked = zygote.spawn_many(_requests(made))
    assert all(isinstance(child, ForkedProcess) for child in forked)
    pids = [child.pid for child in forked if child is not None]
    assert len(set(pids)) == count
    assert {psutil.Process(pid).ppid() for pid in pids} == {zygote.pid}
    for child, (_, theirs, _) in zip(forked, made, strict=True):
        assert child is not None
        assert _served_by(child, theirs)


def test_a_request_too_large_is_left_to_a_fresh_interpreter_alone(
    zygote: Zygote, ends: _Ends
) -> None:
    made = ends.make(3)
    requests = _requests(made)
    huge = {**os.environ, "SNAKEPIT_TEST_HUGE": "x" * (_zygote._MAX_MESSAGE + 1)}
    requests[1] = (huge, *requests[1][1:])
    forked = zygote.spawn_many(requests)
    assert forked[1] is None
    for position in (0, 2):
        child = forked[position]
        assert child is not None
        assert _served_by(child, made[position][1])


def test_a_template_that_dies_with_requests_waiting_is_replaced_once(
    zygote: Zygote, ends: _Ends
) -> None:
    first = zygote.spawn_many(_requests(ends.make(1)))[0]
    assert first is not None
    old_template = zygote.pid
    assert old_template is not None
    psutil.Process(old_template).kill()
    psutil.Process(old_template).wait(timeout=30)
    made = ends.make(3)
    forked = zygote.spawn_many(_requests(made))
    assert zygote.pid not in (None, old_template)
    for child, (_, theirs, _) in zip(forked, made, strict=True):
        assert child is not None
        assert psutil.Process(child.pid).ppid() == zygote.pid
        assert _served_by(child, theirs)
    # The worker of the dead template died with it, and is known to have.
    assert first.wait(timeout=30) != 0


def test_start_processes_keeps_the_order_of_its_handles_when_one_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with snakepit.Pool(workers=3) as pool:
        handles = pool._supervisor.handles
        real = _handle.WorkerHandle.open_ends

        def open_ends(self: _handle.WorkerHandle) -> Any:
            if self is handles[1]:
                raise OSError(24, "Too many open files (test double)")
            return real(self)

        monkeypatch.setattr(_handle.WorkerHandle, "open_ends", open_ends)
        outcomes = _handle.start_processes(handles, pool._supervisor._zygote)
        try:
            assert isinstance(outcomes[1], OSError)
            for position in (0, 2):
                started = outcomes[position]
                assert not isinstance(started, BaseException)
                proc, sock, fault_log = started
                assert psutil.Process(proc.pid).ppid() == pool._supervisor._zygote.pid
                assert os.fstat(sock.fileno())
        finally:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    continue
                proc, sock, fault_log = outcome
                proc.kill()
                sock.close()
                fault_log.close()
        assert pool.call(_tasks.add, 1, 2) == 3


def test_a_pool_of_many_workers_has_each_forked_and_ready() -> None:
    with snakepit.Pool(workers=10) as pool:
        template = pool._supervisor._zygote
        assert template is not None
        pids = pool.worker_pids()
        assert len(set(pids)) == 10
        assert {psutil.Process(pid).ppid() for pid in pids} == {template.pid}
        assert pool.stats()["idle"] == 10
        assert {pool.call(_tasks.pid) for _ in range(20)} <= set(pids)


def test_subprocess_errors_are_outcomes_not_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    with snakepit.Pool(workers=1, preload=None) as pool:
        handles = pool._supervisor.handles

        def popen(*args: Any, **kwargs: Any) -> Any:
            raise subprocess.SubprocessError("no process (test double)")

        monkeypatch.setattr(_handle.subprocess, "Popen", popen)
        outcomes = _handle.start_processes(handles, None)
        assert len(outcomes) == 1
        assert isinstance(outcomes[0], subprocess.SubprocessError)
        monkeypatch.undo()
        assert pool.call(_tasks.add, 1, 1) == 2


def test_a_template_killed_before_it_answers_leaves_no_request_waiting(
    zygote: Zygote, ends: _Ends, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed after the requests went out and before any reply is read: each
    # request still gets an answer (a worker forked before the kill, which
    # died with the template, or one of its replacement), and nothing waits
    # for the full reply timeout.
    monkeypatch.setattr(_zygote, "_SPAWN_TIMEOUT", 20.0)
    real = Zygote._collect
    killed: list[int] = []

    def collect(self: Zygote, template: Any, sent: list[int], forked: list[Any]) -> list[int]:
        if not killed:
            killed.append(template.proc.pid)
            template.proc.kill()
            template.proc.wait(timeout=30)
        return real(self, template, sent, forked)

    monkeypatch.setattr(Zygote, "_collect", collect)
    made = ends.make(3)
    forked = zygote.spawn_many(_requests(made))
    assert killed
    for child, (_, theirs, _) in zip(forked, made, strict=True):
        if child is None:
            continue  # left to a fresh interpreter: allowed
        if child.returncode is None and _parent(child.pid) not in (None, 1, killed[0]):
            assert _parent(child.pid) == zygote.pid != killed[0]
            assert _served_by(child, theirs)
        else:
            # Forked before the kill: it dies with the killed template (its
            # exit may still be on its way to the pool's reader thread).
            assert child.wait(timeout=30) != 0


def _parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


def test_an_interrupted_start_closes_every_end_it_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with snakepit.Pool(workers=3) as pool:
        zygote = pool._supervisor._zygote
        assert zygote is not None

        def interrupted(requests: Any) -> Any:
            raise KeyboardInterrupt  # a BaseException, mid-start

        before = len(os.listdir("/proc/self/fd"))
        monkeypatch.setattr(zygote, "spawn_many", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _handle.start_processes(pool._supervisor.handles, zygote)
        assert len(os.listdir("/proc/self/fd")) == before
        monkeypatch.undo()
        assert pool.call(_tasks.add, 2, 2) == 4
