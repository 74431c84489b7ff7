"""What ProcessPoolExecutor, loky and pebble users write works the same here."""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import FIRST_COMPLETED, as_completed, wait

import pytest

import snakepit

from . import _tasks


def test_max_workers_is_an_alias_of_workers() -> None:
    with snakepit.Pool(max_workers=2) as pool:
        assert pool.stats()["size"] == 2
        assert pool.call(_tasks.add, 1, 2) == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"workers": 2, "max_workers": 2}, TypeError),
        ({"max_workers": 0}, ValueError),
        ({"max_workers": 1.5}, TypeError),
        ({"workers": True}, TypeError),
    ],
)
def test_bad_worker_counts_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        snakepit.Pool(**kwargs)  # type: ignore[arg-type]


def test_a_process_pool_executor_script_runs_unchanged() -> None:
    executor: concurrent.futures.Executor = snakepit.Pool(max_workers=2)
    with executor:
        futures = {executor.submit(_tasks.add, i, i): i for i in range(8)}
        done = {futures[f]: f.result() for f in as_completed(futures, timeout=60)}
        assert done == {i: 2 * i for i in range(8)}
        finished, _ = wait([executor.submit(_tasks.add, 1, 1)], return_when=FIRST_COMPLETED)
        assert [f.result() for f in finished] == [2]
        assert list(executor.map(_tasks.add, range(5), range(5), chunksize=2)) == [
            0,
            2,
            4,
            6,
            8,
        ]
    with pytest.raises(RuntimeError):  # as concurrent.futures raises after shutdown
        executor.submit(_tasks.add, 1, 2)
