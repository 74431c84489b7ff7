"""A session whose worker the pool ended on purpose (cancel, recycle) is lost too."""

from __future__ import annotations

import time

import pytest

import snakepit
from snakepit.errors import CallCancelledError, SessionLostError

from . import _session_tasks as sessions
from . import _tasks


def _wait_running(pool: snakepit.Pool, future: object) -> None:
    deadline = time.monotonic() + 30
    while pool.stats()["busy"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_cancelling_a_session_call_loses_the_session_once() -> None:
    with snakepit.Pool(1, terminate_grace=0.5) as pool:
        view = pool.options(session="s")
        assert view.call(sessions.remember, "s", 5) > 0
        future = view.submit(time.sleep, 30)
        _wait_running(pool, future)
        assert pool.cancel(future)
        with pytest.raises(CallCancelledError):
            future.result(30)
        with pytest.raises(SessionLostError) as info:
            view.call(sessions.recall, "s")
        assert info.value.exit_kind == "cancelled"
        assert view.call(sessions.recall, "s") == "<none>"  # a fresh session from here


def test_recycling_a_session_worker_loses_the_session_once() -> None:
    with snakepit.Pool(1, max_tasks_per_child=1) as pool:
        view = pool.options(session="s")
        assert view.call(sessions.remember, "s", 5) > 0
        with pytest.raises(SessionLostError) as info:
            view.call(sessions.recall, "s")
        assert info.value.exit_kind == "recycled"
        assert pool.call(_tasks.add, 1, 2) == 3
