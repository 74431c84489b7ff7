""":class:`CallCancelledError`, apart from the rest of the hierarchy (same rules).

It is also a :class:`concurrent.futures.CancelledError`, and importing
:mod:`concurrent.futures` brings :mod:`logging` with it: about 4 ms of a
worker's start, for an error only a pool raises. ``snakepit.errors`` loads
this module on first use of the name, and the record transport
(:mod:`snakepit.errors._remote`) loads it with itself, so records naming it
always find it.
"""

from __future__ import annotations

from concurrent import futures

from snakepit.errors._base import SnakepitError, error_class
from snakepit.errors._hierarchy import _optional_int


@error_class
class CallCancelledError(SnakepitError, futures.CancelledError):
    """The call was cancelled (:meth:`snakepit.Pool.cancel`) after it started.

    Also a :class:`concurrent.futures.CancelledError`, so ``except
    CancelledError`` code written for executors keeps working; the future
    itself is *finished* with this error (``cancelled()`` is False), as the
    stdlib reserves the cancelled state for calls that never ran.

    Attributes:
        worker_id: The worker slot the call was running on, when it had one.
    """

    __match_args__ = ("worker_id",)

    worker_id: int | None = None

    def __post_init__(self) -> None:
        self.worker_id = _optional_int(self.worker_id)
        super().__post_init__()

    def _default_message(self) -> str:
        where = f" on worker {self.worker_id}" if self.worker_id is not None else ""
        return f"the call was cancelled while it ran{where}"
