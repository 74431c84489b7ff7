"""``Pool.map`` and ``PoolView.map``: ordered results, chunks, a bounded window.

Items are taken from the iterables lazily and submitted a window at a time
(a few calls per worker), so a huge or endless input never sits in memory
all at once; the first window is submitted before ``map`` returns, so work
starts at once, as with ``Executor.map``. ``chunksize > 1`` sends that many
items in one call (see ``snakepit/_wire/chunks.py``): results still come in
order and an item that raised raises its own error when the iterator reaches
it. Closing the iterator early cancels what has not started.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from snakepit._wire._pickling import name_of, resolve
from snakepit._wire.chunks import RUN_CHUNK, ItemError
from snakepit.errors._remote import record_to_exception

from ._timeouts import checked_timeout

__all__ = ["map_calls"]

Submit = Callable[..., Future[Any]]


def map_calls(
    submit: Submit,
    fn: Callable[..., Any] | str,
    iterables: tuple[Iterable[Any], ...],
    *,
    timeout: float | None,
    chunksize: int,
    window: int,
) -> Iterator[Any]:
    """``Executor.map`` over ``submit``: ``fn`` applied to zipped items, in order.

    ``timeout`` bounds the wait for all results, counted from this call
    (TimeoutError); ``window`` is how many calls may be in flight.

    Raises:
        ValueError: ``chunksize`` is below 1; ``timeout`` is NaN, zero or
            negative (a huge one means none).
        TypeError: ``timeout`` is not a number.
    """
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be a whole number >= 1, got {chunksize!r}")
    timeout = checked_timeout(timeout)
    end = None if timeout is None else time.monotonic() + timeout
    items = zip(*iterables, strict=False)
    if chunksize == 1:
        calls: Iterator[Future[Any]] = (submit(fn, *args) for args in items)
    else:
        chunks = iter(lambda: list(itertools.islice(items, chunksize)), [])
        target = _by_name(fn)
        # One list per iterable: flat lists of plain items pickle with no hook.
        calls = (submit(RUN_CHUNK, target, _columns(chunk)) for chunk in chunks)
    pending: deque[Future[Any]] = deque(itertools.islice(calls, max(1, window)))
    return _results(pending, calls, end, chunked=chunksize > 1)


def _columns(chunk: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The chunk's items as one list per iterable."""
    return [list(column) for column in zip(*chunk, strict=True)]


def _by_name(fn: Callable[..., Any] | str) -> Callable[..., Any] | str:
    """``fn``'s ``"module:qualname"`` when that names it (cheap to send and to
    check), else ``fn`` itself (a lambda, a closure: pickled by value)."""
    if isinstance(fn, str):
        resolve(fn)  # a name that resolves to nothing fails here, not per chunk
        return fn
    name = name_of(fn)
    try:
        if resolve(name) is fn:
            return name
    except Exception:
        pass
    return fn


def _results(
    pending: deque[Future[Any]],
    calls: Iterator[Future[Any]],
    end: float | None,
    *,
    chunked: bool,
) -> Iterator[Any]:
    try:
        while pending:
            future = pending.popleft()
            value = future.result(None if end is None else end - time.monotonic())
            pending.extend(itertools.islice(calls, 1))
            if not chunked:
                yield value
                continue
            for item in value:
                if isinstance(item, ItemError):
                    raise record_to_exception(item.record)
                yield item
    finally:
        for future in pending:
            future.cancel()
