"""The template's start: requests sent before its hello, and what workers import at start.

The supervisor sends the first fork request as soon as the template process
exists (it waits in the socket while the template imports). These tests
drive a template directly over its socket, as the pool does.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import snakepit
from snakepit.errors import _remote
from snakepit.worker import _zygote
from tests.pool import _zygote_tasks

#: Modules a worker needs only for an error, a function sent by value or a
#: log record: none of them is imported before its first call.
# (logging and traceback come early after all: concurrent.futures, which the
# errors need for CallCancelledError, imports them.)
_LATE = ("pathlib", "cloudpickle", "snakepit.errors._remote")


class _Template:
    """A template started as the pool starts one, with its control socket."""

    def __init__(self, *preload: str) -> None:
        self.ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snakepit.worker",
                    "zygote",
                    str(child.fileno()),
                    str(os.getpid()),
                    *preload,
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            child.close()

    def request_fork(self) -> socket.socket:
        """Send a fork request; returns our end of the would-be worker's socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs, tempfile.TemporaryFile() as fault_log:
            request = pickle.dumps(("spawn", {}, None))
            socket.send_fds(self.ctl, [request], [theirs.fileno(), fault_log.fileno()])
        return ours

    def receive(self, timeout: float = 60.0) -> tuple[Any, ...] | None:
        """The next message (its descriptors closed); None at end of stream."""
        ready, _, _ = select.select([self.ctl], [], [], timeout)
        assert ready, "the template did not answer"
        data, fds, _, _ = socket.recv_fds(self.ctl, _zygote.MAX_MESSAGE, 1)
        for fd in fds:
            os.close(fd)
        return pickle.loads(data) if data else None

    def close(self) -> None:
        self.ctl.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def template_factory() -> Iterator[Any]:
    started: list[_Template] = []

    def start(*preload: str) -> _Template:
        started.append(_Template(*preload))
        return started[-1]

    yield start
    for template in started:
        template.close()


def test_a_request_sent_before_the_hello_is_forked_after_it(template_factory: Any) -> None:
    template = template_factory()
    worker_end = template.request_fork()  # the template is still importing
    with worker_end:
        hello = template.receive()
        assert hello is not None
        assert hello[:2] == ("hello", template.proc.pid)
        assert hello[3] == 1
        started = template.receive()
        assert started is not None
        assert started[0] == "started"
        child = psutil.Process(started[1])
        assert child.ppid() == template.proc.pid
        # No supervisor: the worker waits for its first message; ending the
        # stream ends it, and the template reports the exit.
        worker_end.shutdown(socket.SHUT_RDWR)
        exited = template.receive()
        assert exited is not None
        assert exited[:2] == ("exit", child.pid)


def test_a_template_with_threads_forks_nothing_it_was_sent(template_factory: Any) -> None:
    template = template_factory("tests.pool._zygote_thread")
    before, after = template.request_fork(), None
    try:
        hello = template.receive()
        assert hello is not None
        assert hello[0] == "hello"
        assert hello[3] == 2
        after = template.request_fork()
        # End of our stream: the template answers whatever it read before
        # that (a fork would say "started" first), then ends its own.
        template.ctl.shutdown(socket.SHUT_WR)
        assert template.receive() is None
        assert template.proc.wait(timeout=30) == 0
        for worker_end in (before, after):
            worker_end.settimeout(30)
            assert worker_end.recv(1) == b""  # nobody holds the other end
    finally:
        for worker_end in (before, after):
            if worker_end is not None:
                worker_end.close()


def test_the_deferred_imports_cover_the_error_records() -> None:
    # The template imports these once idle, so restarted workers have them.
    assert set(_remote.DEFERRED_IMPORTS) <= set(_zygote.DEFERRED_IMPORTS)
    assert set(_LATE) - {"pathlib"} <= set(_zygote.DEFERRED_IMPORTS)


@pytest.mark.parametrize("preload", [None, []], ids=["fresh", "forked"])
def test_a_worker_starts_without_what_it_needs_only_later(preload: list[str] | None) -> None:
    with snakepit.Pool(workers=1, preload=preload) as pool:
        assert pool.call(_zygote_tasks.loaded, list(_LATE)) == [False] * len(_LATE)
        # A call that fails imports the error records it needs.
        with pytest.raises(KeyError):
            pool.call(_zygote_tasks.lookup_missing)
        assert pool.call(_zygote_tasks.loaded, ["snakepit.errors._remote"]) == [True]


#: What a worker that sees no CUDA object, no torch and no cancelled call
#: never needs (each would cost its start milliseconds of imports).
_UNNEEDED = (
    "concurrent.futures",
    "logging",
    "snakepit.errors._cancelled",
    "snakepit.telemetry._gpu",
    "snakepit.zero_copy._cuda",
    "snakepit.zero_copy._cuda_leases",
)


@pytest.mark.parametrize("preload", [None, []], ids=["fresh", "forked"])
def test_a_worker_starts_without_cuda_logging_or_the_cancel_error(
    preload: list[str] | None,
) -> None:
    with snakepit.Pool(workers=1, preload=preload) as pool:
        assert pool.call(_zygote_tasks.loaded, list(_UNNEEDED)) == [False] * len(_UNNEEDED)


def test_small_host_arrays_both_ways_load_no_cuda_module() -> None:
    import numpy as np

    cuda = [name for name in _UNNEEDED if "cuda" in name]
    with snakepit.Pool(workers=1, preload=[]) as pool:
        # In a list, each array too small for shared memory goes through the
        # general pickler's reducer, in the arguments and in the result.
        back = pool.call(_zygote_tasks.echo, [np.arange(3)])
        assert np.array_equal(back[0], np.arange(3))
        assert pool.call(_zygote_tasks.loaded, cuda) == [False] * len(cuda)
    code = (
        "import sys, numpy as np; from snakepit._wire import codec; "
        "codec.decode(codec.encode([np.arange(3)]).blob); codec.encode([np.arange(3)]); "
        f"assert not [m for m in {cuda!r} if m in sys.modules], sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cancel_error_loads_on_first_use_and_records_find_it() -> None:
    code = (
        "import sys, snakepit.errors as e; "
        "assert 'snakepit.errors._cancelled' not in sys.modules; "
        "from snakepit.errors._remote import exception_to_record, record_to_exception; "
        "error = record_to_exception(exception_to_record(e.CallCancelledError(worker_id=2))); "
        "assert type(error) is e.CallCancelledError and error.worker_id == 2, error; "
        "import concurrent.futures as f; assert isinstance(error, f.CancelledError)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_pool_without_async_use_never_imports_asyncio() -> None:
    # asyncio costs a first pool ~20 ms to import: only acall and async with need it.
    code = (
        "import sys, snakepit; from snakepit._bench import tasks; "
        "pool = snakepit.Pool(1, preload=[]); pool.call(tasks.noop); pool.shutdown(); "
        "assert 'asyncio' not in sys.modules, 'asyncio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
