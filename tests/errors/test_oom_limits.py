"""An out-of-memory error under a process limit names that limit, not the host's memory."""

from __future__ import annotations

import pytest

import snakepit
from snakepit.errors import OutOfMemoryError
from snakepit.errors._remote import _oom_error

from ..pool import _tasks

GIB = 1 << 30


def test_an_rlimit_as_that_ran_out_is_named_with_its_size() -> None:
    with (
        snakepit.Pool(
            1, initializer=_tasks.limit_address_space, initargs=(3 * GIB,), preload=None
        ) as pool,
        pytest.raises(OutOfMemoryError) as info,
    ):
        pool.call(_tasks.allocate, 4 * GIB)
    error = info.value
    assert "RLIMIT_AS of 3.00 GiB was reached" in str(error)
    assert error.total == 3 * GIB
    assert error.available is not None
    assert error.available < 3 * GIB
    assert "free of 3.00 GiB" in (error.suggestion or "")


@pytest.mark.parametrize(("kind", "name"), [(1, "RLIMIT_AS"), (2, "RLIMIT_DATA"), (3, "cgroup")])
def test_each_kind_of_limit_is_named(kind: int, name: str) -> None:
    context = {
        "memory": {
            "requested": 2 * GIB,
            "live": {
                "host_available": 20 * GIB,
                "host_total": 24 * GIB,
                "host_limit": GIB,
                "host_limit_used": GIB // 4,
                "host_limit_kind": kind,
            },
        }
    }
    error = _oom_error(context, MemoryError, "Unable to allocate 2.00 GiB")
    assert name in error.message
    assert (error.total, error.available) == (GIB, GIB - GIB // 4)


def test_figures_from_the_message_win_over_the_limit() -> None:
    context = {"memory": {"free": 5, "total": 10, "live": {"host_limit": GIB}}}
    error = _oom_error(context, MemoryError, "out of memory")
    assert (error.total, error.available) == (10, 5)
    assert "limit" not in error.message
