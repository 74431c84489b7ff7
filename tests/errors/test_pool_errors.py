"""Structured errors end to end: raised in a real worker, caught in the caller."""

from __future__ import annotations

import traceback
from collections.abc import Iterator

import pytest

import snakepit
from snakepit.errors import (
    PoolClosedError,
    PythonError,
    RemoteTraceback,
    ShapeError,
    WorkerUnavailableError,
)

from ..pool import _tasks as _pool_tasks
from . import _tasks


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as pool:
        yield pool


def test_torch_shape_error_from_a_worker(pool: snakepit.Pool) -> None:
    pytest.importorskip("torch")
    with pytest.raises(ShapeError) as info:
        pool.options(timeout=120).call(_tasks.torch_matmul_mismatch)
    exc = info.value
    assert (exc.shape_a, exc.shape_b, exc.operation) == ((3, 4), (2, 2), "matmul")
    assert isinstance(exc, RuntimeError)  # what torch raised, still catchable as such
    assert exc.remote_type == "builtins.RuntimeError"
    match exc:
        case ShapeError((3, 4), (2, 2), "matmul"):
            pass
        case _:  # pragma: no cover - the assertion below explains
            pytest.fail(f"match statement did not bind the shapes: {exc!r}")
    # The suggestion names the clashing dimensions.
    assert "a.shape[-1] = 4 != b.shape[-2] = 2" in str(exc)
    # The worker's frames are shown, through __cause__, above the local ones.
    assert exc.remote_traceback is not None
    assert "in torch_matmul_mismatch" in exc.remote_traceback
    assert isinstance(exc.__cause__, RemoteTraceback)
    printed = "".join(traceback.format_exception(exc))
    assert "in torch_matmul_mismatch" in printed
    assert "The above exception was the direct cause of the following exception" in printed
    assert printed.index("in torch_matmul_mismatch") < printed.index("in test_torch_shape_error")


def test_remote_chain_and_notes_from_a_worker(pool: snakepit.Pool) -> None:
    with pytest.raises(ValueError, match="lookup failed") as info:
        pool.options(timeout=60).call(_tasks.wrapped_key_error)
    exc = info.value
    assert isinstance(exc, PythonError)
    assert exc.__notes__ == ["while reading the config"]
    (cause,) = exc.remote_causes
    assert isinstance(cause, KeyError)
    assert isinstance(cause, PythonError)
    assert "wrapped_key_error" in (exc.remote_traceback or "")
    assert "The above exception was the direct cause" in (exc.remote_traceback or "")


def test_submit_after_shutdown_raises_pool_closed() -> None:
    closed = snakepit.Pool(workers=1)
    closed.shutdown()
    with pytest.raises(PoolClosedError) as info:
        closed.submit(_tasks.wrapped_key_error)
    assert isinstance(info.value, WorkerUnavailableError)
    assert isinstance(info.value, RuntimeError)  # as concurrent.futures raises


def test_an_unpicklable_result_says_so_once_and_talks_about_results() -> None:
    with snakepit.Pool(workers=1) as pool:
        with pytest.raises(snakepit.errors.SerializationError) as info:
            pool.call(_pool_tasks.unpicklable_result)
        text = str(info.value)
        assert text.count("Suggestion:") == 1
        assert "returned a lock" in text
        assert "arguments" not in text
        assert "return picklable values" in (info.value.suggestion or "")
        assert pool.call(_pool_tasks.add, 1, 2) == 3  # the worker stayed alive
