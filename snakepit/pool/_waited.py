"""The outcome of a call whose caller waits for it at once (``Pool.call``).

A ``concurrent.futures.Future`` costs a ``threading.Condition`` to make
and Python-level locking in each of the four steps every call takes
(running, result, done, read): about a tenth of a no-op call's time in the
caller. A :class:`WaitedFuture` keeps the same states and answers as a
Future for everything the supervisor asks of one, with one lock that is
released when the call is over and a lock shared by all of them for the
state changes (held for a few instructions). It never reaches user code,
so nothing waits on it through ``concurrent.futures.wait`` (which reads
a Future's private parts); ``submit`` keeps returning real Futures.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

__all__ = ["Outcome", "WaitedFuture"]

_PENDING, _RUNNING, _CANCELLED, _FINISHED = range(4)
#: Guards every WaitedFuture's state change (each is a few instructions).
_changing = threading.Lock()


class WaitedFuture:
    """A Future for one waiting caller (see the module)."""

    __slots__ = ("_callbacks", "_error", "_over", "_result", "_state")

    def __init__(self) -> None:
        self._state = _PENDING
        self._result: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[WaitedFuture], object]] | None = None
        self._over = threading.Lock()
        self._over.acquire()  # released once the call is over

    def set_running_or_notify_cancel(self) -> bool:
        """As ``Future``'s: False if cancelled, else the call is running."""
        with _changing:
            if self._state == _CANCELLED:
                return False
            if self._state != _PENDING:  # Future raises RuntimeError: a bug either way
                raise InvalidStateError(f"the call is not pending: {self!r}")
            self._state = _RUNNING
            return True

    def cancel(self) -> bool:
        """Cancel a call that is not running yet; whether it is cancelled."""
        with _changing:
            if self._state == _CANCELLED:
                return True
            if self._state != _PENDING:
                return False
            self._state = _CANCELLED
        self._over.release()
        self._run_callbacks()
        return True

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return self._state == _RUNNING

    def done(self) -> bool:
        return self._state >= _CANCELLED

    def set_result(self, result: Any) -> None:
        """Complete the call with ``result``; InvalidStateError if it is over."""
        self._finish(result, None)

    def set_exception(self, exception: BaseException) -> None:
        """Fail the call with ``exception``; InvalidStateError if it is over."""
        self._finish(None, exception)

    def _finish(self, result: Any, error: BaseException | None) -> None:
        with _changing:
            if self._state >= _CANCELLED:
                raise InvalidStateError(f"the call is over already: {self!r}")
            self._result, self._error = result, error
            self._state = _FINISHED
        self._over.release()
        if self._callbacks is not None:
            self._run_callbacks()

    def result(self, timeout: float | None = None) -> Any:
        """The call's value (or its exception raised), waiting up to ``timeout``."""
        self._wait(timeout)
        if self._error is not None:
            try:
                raise self._error
            finally:
                self = None  # type: ignore[assignment]  # no cycle through the traceback
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception (None if it succeeded), waiting up to ``timeout``."""
        self._wait(timeout)
        return self._error

    def _wait(self, timeout: float | None) -> None:
        if self._state < _CANCELLED:
            over = self._over
            # None or inf: no limit (a lock refuses timeouts past TIMEOUT_MAX).
            wait = (
                -1.0 if timeout is None or timeout >= threading.TIMEOUT_MAX else max(0.0, timeout)
            )
            if not over.acquire(timeout=wait):
                raise TimeoutError()
            over.release()  # for anyone else asking
        if self._state == _CANCELLED:
            raise CancelledError()

    def add_done_callback(self, fn: Callable[[WaitedFuture], object]) -> None:
        """Run ``fn(self)`` once the call is over (at once if it is)."""
        with _changing:
            if self._state < _CANCELLED:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        _call_back(fn, self)

    def _run_callbacks(self) -> None:
        with _changing:
            callbacks, self._callbacks = self._callbacks, None
        for fn in callbacks or ():
            _call_back(fn, self)

    def __repr__(self) -> str:
        state = ("pending", "running", "cancelled", "finished")[self._state]
        return f"<WaitedFuture at {id(self):#x} state={state}>"


def _call_back(fn: Callable[[WaitedFuture], object], future: WaitedFuture) -> None:
    try:
        fn(future)
    except Exception:
        # As concurrent.futures does: a failing callback is logged, not raised.
        logging.getLogger("concurrent.futures").exception(
            "exception calling callback for %r", future
        )


#: What a call's caller gets: a Future (``submit``) or a WaitedFuture (``call``).
Outcome = Future[Any] | WaitedFuture
