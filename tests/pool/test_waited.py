"""WaitedFuture answers as concurrent.futures.Future does, for everything
the supervisor asks of a call's future: each test runs on both."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

import pytest

import snakepit
from snakepit.pool._waited import WaitedFuture
from tests.pool import _tasks

Kind = type[Future[Any]] | type[WaitedFuture]


@pytest.fixture(params=[Future, WaitedFuture], ids=["Future", "WaitedFuture"])
def kind(request: pytest.FixtureRequest) -> Kind:
    made: Kind = request.param
    return made


def test_a_result_goes_through_running(kind: Kind) -> None:
    future = kind()
    assert (future.running(), future.done(), future.cancelled()) == (False, False, False)
    assert future.set_running_or_notify_cancel() is True
    assert (future.running(), future.done()) == (True, False)
    future.set_result(42)
    assert (future.running(), future.done(), future.cancelled()) == (False, True, False)
    assert future.result() == 42
    assert future.exception() is None


def test_an_exception_is_raised_by_result(kind: Kind) -> None:
    future = kind()
    future.set_running_or_notify_cancel()
    error = KeyError("k")
    future.set_exception(error)
    with pytest.raises(KeyError) as caught:
        future.result()
    assert caught.value is error
    assert future.exception() is error
    assert future.done()


def test_a_pending_call_cancels_and_a_running_one_does_not(kind: Kind) -> None:
    pending = kind()
    assert pending.cancel() is True
    assert pending.cancel() is True  # again: still cancelled
    assert (pending.cancelled(), pending.done(), pending.running()) == (True, True, False)
    assert pending.set_running_or_notify_cancel() is False
    with pytest.raises(CancelledError):
        pending.result()
    with pytest.raises(CancelledError):
        pending.exception()
    running = kind()
    running.set_running_or_notify_cancel()
    assert running.cancel() is False
    assert not running.cancelled()


@pytest.mark.parametrize("second", ["result", "exception"])
def test_a_finished_future_refuses_a_second_outcome(kind: Kind, second: str) -> None:
    future = kind()
    future.set_running_or_notify_cancel()
    future.set_result(1)
    again = (
        (lambda: future.set_result(2))
        if second == "result"
        else (lambda: future.set_exception(ValueError()))
    )
    with pytest.raises(InvalidStateError):
        again()
    assert future.result() == 1
    cancelled = kind()
    cancelled.cancel()
    with pytest.raises(InvalidStateError):
        cancelled.set_result(3)


def test_running_twice_is_an_error(kind: Kind) -> None:
    future = kind()
    future.set_running_or_notify_cancel()
    with pytest.raises((RuntimeError, InvalidStateError)):  # Future's, WaitedFuture's
        future.set_running_or_notify_cancel()


def test_a_result_not_there_yet_times_out(kind: Kind) -> None:
    future = kind()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0)
    future.set_result("late")
    assert future.result(timeout=0) == "late"


def test_a_negative_timeout_is_no_wait(kind: Kind) -> None:
    future = kind()
    with pytest.raises(TimeoutError):
        future.result(timeout=-1.0)


def test_an_infinite_timeout_waits_for_the_result() -> None:
    future = WaitedFuture()
    threading.Timer(0.05, future.set_result, ("late",)).start()
    assert future.result(timeout=float("inf")) == "late"


def test_every_waiting_thread_wakes_with_the_result(kind: Kind) -> None:
    future = kind()
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(future.result(5))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    assert got == []
    future.set_running_or_notify_cancel()
    future.set_result("x")
    for thread in threads:
        thread.join(5)
    assert got == ["x"] * 4


def test_callbacks_run_once_when_over_or_at_once(
    kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    future = kind()
    seen: list[Any] = []
    future.add_done_callback(seen.append)

    def broken(_: Any) -> None:
        raise RuntimeError("callback broke")

    future.add_done_callback(broken)
    assert seen == []
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(None)
    assert seen == [future]
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)
    future.add_done_callback(seen.append)  # over already: runs at once
    assert seen == [future, future]
    cancelled = kind()
    cancelled.add_done_callback(seen.append)
    cancelled.cancel()
    assert seen[-1] is cancelled


def test_a_call_waits_on_a_waited_future_and_submit_gives_a_future() -> None:
    with snakepit.Pool(workers=1) as pool:
        assert isinstance(pool.submit(_tasks.add, 1, 2), Future)
        assert isinstance(pool.options(timeout=5).submit(_tasks.add, 1, 2), Future)
        assert type(pool._submit_waited(_tasks.add, (1, 2), {})) is WaitedFuture
        assert pool.call(_tasks.add, 1, 2) == 3
        with pytest.raises(snakepit.errors.PythonError):
            pool.call(_tasks.always_raise)
        with pytest.raises(snakepit.errors.WorkerCrashedError):
            pool.call(_tasks.abort)
        assert pool.call(_tasks.add, 2, 2) == 4
