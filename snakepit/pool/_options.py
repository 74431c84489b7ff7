"""Per-call options, kept apart from the called function's own arguments.

``pool.call(fn, x, device="cuda:0", timeout=3)`` hands both keywords to
``fn``: ML functions very often take exactly those parameters. Options for the
call itself go through :meth:`snakepit.Pool.options`, which returns a
:class:`PoolView` with the same call methods (the shape Ray users know from
``.options()``)::

    pool.options(timeout=5, idempotent=True).call(fn, x)
    fast = pool.options(device="cuda:1")
    futures = [fast.submit(fn, batch) for batch in batches]

A view is a light value: it holds its pool and its options, nothing else, and
``view.options(...)`` returns a new view with some options replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from ._map import map_calls
from ._timeouts import checked_timeout
from ._waited import Outcome

__all__ = ["UNSET", "CallMethods", "CallOptions", "PoolView", "checked_timeout"]

#: The parameters and the result of the function a call runs: type checkers see
#: ``Future[int]`` for a function returning ``int`` and flag wrong arguments,
#: as they do for ``Executor.submit``. A ``"module:function"`` name is not
#: checkable, so its results are ``Any``.
P = ParamSpec("P")
R = TypeVar("R")


class _Unset:
    """The type of :data:`UNSET`: an option the caller did not give."""

    def __repr__(self) -> str:
        return "UNSET"


#: Marks an option left to the pool's default (``timeout=None`` means none).
UNSET: Any = _Unset()


def _optional_text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CallOptions:
    """How one call runs, apart from what it computes.

    Attributes:
        timeout: Seconds the call may run in a worker before the worker is
            terminated (:class:`~snakepit.errors.WorkerTimeoutError`); None for
            no limit; :data:`UNSET` for the pool's default.
        idempotent: The call may be retried on another worker after a crash
            or timeout, by the pool's retry policy.
        session: Calls with the same session name run on the same worker, so
            state a call leaves in the worker is there for the next one.
        device: Run on a worker of this device (``"cpu"``, ``"cuda:1"``, ...).
    """

    timeout: float | None = UNSET
    idempotent: bool = False
    session: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.timeout is not UNSET:
            object.__setattr__(self, "timeout", checked_timeout(self.timeout))
        if not isinstance(self.idempotent, bool):
            raise TypeError(f"idempotent must be True or False, not {self.idempotent!r}")
        _optional_text("session", self.session)
        _optional_text("device", self.device)

    def replace(self, **changes: Any) -> CallOptions:
        """A copy with the given options replaced (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def timeout_or(self, default: float | None) -> float | None:
        """The call's timeout: its own, or ``default`` when it was not set."""
        return default if self.timeout is UNSET else self.timeout


#: The options of a plain ``pool.submit``.
DEFAULT_OPTIONS = CallOptions()


class _Submitter(Protocol):
    #: Calls a map may have in flight.
    _map_window: int

    def _submit(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        caller_waits: bool = False,
        future: Future[Any] | None = None,
    ) -> Outcome: ...

    def cancel(self, future: Future[Any], /, *, kill: bool = True) -> bool: ...


class CallMethods:
    """``call``, ``acall`` and ``map`` over a ``submit``: one copy for the pool and its views."""

    __slots__ = ()

    #: Calls a map may have in flight.
    _map_window: int

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    @overload
    def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> Future[Any]: ...
    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise NotImplementedError

    def cancel(self, future: Future[Any], /, *, kill: bool = True) -> bool:
        """Cancel a call, even a running one (see :meth:`snakepit.Pool.cancel`)."""
        raise NotImplementedError

    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def call(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def call(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker and wait for its result (see ``submit``)."""
        return self._submit_waited(fn, args, kwargs).result()

    def _submit_waited(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Outcome:
        # ``submit`` for a caller that waits for the result at once, and so
        # may read the reply itself (the pool's ``caller_waits``).
        raise NotImplementedError

    @overload
    async def acall(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    async def acall(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    async def acall(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Awaitable form of :meth:`call`.

        Cancelling the awaiting task cancels the call, running or not: a
        running call's worker is interrupted and replaced (see ``cancel``),
        so it is free for the next call at once.
        """
        import asyncio  # only a caller with an event loop pays for the import

        future = self.submit(fn, *args, **kwargs)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self.cancel(future, kill=True)
            raise

    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[R]: ...
    @overload
    def map(
        self,
        fn: str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]: ...
    def map(
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Like ``Executor.map``: ``fn`` over the zipped items, results in order.

        ``timeout`` bounds the wait for all results (TimeoutError); a view's
        ``timeout`` option bounds each call (each chunk). ``chunksize`` items
        travel in one call, which pays off for many cheap items; an item that
        raised still raises its own error, at its place. Items are submitted a
        few calls per worker ahead of the results taken, not all at once, so
        huge inputs are fine. ``fn`` may also be ``"module:function"``.
        """
        return map_calls(
            self.submit,
            fn,
            iterables,
            timeout=timeout,
            chunksize=chunksize,
            window=self._map_window,
        )


class PoolView(CallMethods):
    """A pool seen through per-call options: ``pool.options(...)`` returns one.

    It has the pool's call methods; every call made through it carries its
    options. Views are cheap: make one per call site or keep one around.
    """

    __slots__ = ("_options", "_pool")

    def __init__(self, pool: _Submitter, options: CallOptions) -> None:
        self._pool = pool
        self._options = options

    @property
    def call_options(self) -> CallOptions:
        """The options calls made through this view carry."""
        return self._options

    def options(
        self,
        *,
        timeout: float | None = UNSET,
        idempotent: bool = UNSET,
        session: str | None = UNSET,
        device: str | None = UNSET,
    ) -> PoolView:
        """A view with some of these options replaced (the others kept)."""
        given = {
            "timeout": timeout,
            "idempotent": idempotent,
            "session": session,
            "device": device,
        }
        changes = {k: v for k, v in given.items() if v is not UNSET}
        return PoolView(self._pool, self._options.replace(**changes))

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    @overload
    def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> Future[Any]: ...
    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker with this view's options."""
        future: Future[Any] = Future()
        self._pool._submit(fn, args, kwargs, self._options, future=future)
        return future

    def _submit_waited(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Outcome:
        return self._pool._submit(fn, args, kwargs, self._options, caller_waits=True)

    def cancel(self, future: Future[Any], /, *, kill: bool = True) -> bool:
        """Cancel a call, even a running one (see :meth:`snakepit.Pool.cancel`)."""
        return self._pool.cancel(future, kill=kill)

    @property
    def _map_window(self) -> int:  # type: ignore[override]
        return self._pool._map_window

    def __repr__(self) -> str:
        return f"<snakepit.PoolView {self._options} of {self._pool!r}>"
