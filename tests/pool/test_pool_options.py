"""Per-call options: ``pool.options(...)`` views, and keywords that reach the function."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit.errors import DeviceNotAvailableError, WorkerCrashedError, WorkerTimeoutError
from snakepit.pool import CallOptions, PoolView

from . import _tasks

BOUND = 60.0


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, device=["cpu", "cpu"], terminate_grace=0.2) as pool:
        yield pool


@pytest.mark.parametrize("method", ["call", "submit", "acall"])
def test_option_names_are_the_functions_keywords(pool: snakepit.Pool, method: str) -> None:
    kwargs: dict[str, Any] = {
        "device": "cuda:0",
        "timeout": 3,
        "idempotent": "yes",
        "session": ["not", "a", "session"],
    }
    if method == "call":
        got = pool.call(_tasks.keywords, 1, **kwargs)
    elif method == "submit":
        got = pool.submit(_tasks.keywords, 1, **kwargs).result(BOUND)
    else:
        got = asyncio.run(pool.acall(_tasks.keywords, 1, **kwargs))
    assert got == {"args": [1], **kwargs}


def test_keywords_reach_the_function_through_a_view_too(pool: snakepit.Pool) -> None:
    view = pool.options(timeout=30)
    assert view.call(_tasks.keywords, timeout=5, device="cpu") == {
        "args": [],
        "timeout": 5,
        "device": "cpu",
    }


def test_timeout_option_kills_a_call_that_runs_too_long(pool: snakepit.Pool) -> None:
    started = time.monotonic()
    with pytest.raises(WorkerTimeoutError) as info:
        pool.options(timeout=0.5).call(_tasks.spin_forever)
    assert info.value.timeout == 0.5
    assert time.monotonic() - started < BOUND
    assert pool.call(_tasks.add, 1, 2) == 3  # the slot came back


def test_timeout_none_overrides_the_pools_default() -> None:
    with snakepit.Pool(workers=1, timeout=0.3, terminate_grace=0.2) as pool:
        with pytest.raises(WorkerTimeoutError):
            pool.call(_tasks.sleep_then_value, 1.0, 1)
        assert pool.options(timeout=None).call(_tasks.sleep_then_value, 1.0, 2) == 2
        # An unrelated option keeps the pool's default timeout.
        with pytest.raises(WorkerTimeoutError):
            pool.options(session="s").call(_tasks.sleep_then_value, 1.0, 3)


def test_idempotent_option_retries_after_a_crash(pool: snakepit.Pool, tmp_path: Path) -> None:
    marker = str(tmp_path / "crashed-once")
    assert pool.options(idempotent=True).call(_tasks.crash_first_time, marker) is None
    with pytest.raises(WorkerCrashedError):
        pool.call(_tasks.crash_first_time, str(tmp_path / "plain"))


def test_session_option_pins_calls_to_one_worker(pool: snakepit.Pool) -> None:
    session = pool.options(session="model")
    first = session.call(_tasks.remember, "weights", 42)
    for _ in range(6):
        assert session.call(_tasks.pid) == first
        assert session.call(_tasks.recall, "weights") == 42


def test_device_option_routes_and_refuses_unknown_devices(pool: snakepit.Pool) -> None:
    assert pool.options(device="cpu").call(_tasks.env, "CUDA_VISIBLE_DEVICES") == ""
    with pytest.raises(DeviceNotAvailableError):
        pool.options(device="cuda:7").call(_tasks.add, 1, 2)


def test_views_chain_and_keep_what_they_do_not_replace(pool: snakepit.Pool) -> None:
    view = pool.options(timeout=0.5, session="a")
    other = view.options(session="b")
    assert isinstance(other, PoolView)
    assert other.call_options == CallOptions(timeout=0.5, session="b")
    assert view.call_options.session == "a"  # views are values: the first is unchanged
    with pytest.raises(WorkerTimeoutError):
        other.call(_tasks.spin_forever)


def test_view_map_and_acall(pool: snakepit.Pool) -> None:
    view = pool.options(timeout=30)
    assert list(view.map(_tasks.add, range(4), range(4))) == [0, 2, 4, 6]
    assert asyncio.run(view.acall(_tasks.add, 2, 2)) == 4
    with pytest.raises(TimeoutError):
        list(view.map(_tasks.sleep_then_value, [2.0], [1], timeout=0.1))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": math.nan}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"idempotent": "yes"}, TypeError),
        ({"session": 3}, TypeError),
        ({"device": 0}, TypeError),
        ({"retries": 2}, TypeError),
    ],
)
def test_bad_options_are_refused_before_any_call(
    pool: snakepit.Pool, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        pool.options(**options)
    assert pool.call(_tasks.add, 1, 1) == 2


def test_huge_timeout_option_means_none(pool: snakepit.Pool) -> None:
    assert pool.options(timeout=math.inf).call_options.timeout is None
    assert pool.options(timeout=math.inf).call(_tasks.add, 2, 3) == 5
