"""What a worker's reply carries, decoded in the reader thread."""

from __future__ import annotations

from typing import Any

from snakepit._wire import codec, protocol
from snakepit.errors import SerializationError
from snakepit.errors._remote import record_to_exception

__all__ = ["decode_reply"]


def decode_reply(tag: str, blob: Any) -> tuple[Any, BaseException | None]:
    """The value of a ``MSG_RESULT`` reply, or the exception of a ``MSG_ERROR``.

    Returns ``(value, None)`` or ``(record, exception)``; a reply that does
    not decode raises :class:`~snakepit.errors.SerializationError`. Results
    keep a block reference per array for as long as they live.
    """
    try:
        value = codec.decode(blob, keep=True)
        if tag == protocol.MSG_RESULT:
            return value, None
        return value, record_to_exception(value)
    except SerializationError:
        raise
    except BaseException as exc:
        raise SerializationError(
            f"cannot deserialize the reply: {type(exc).__name__}: {exc}",
            direction="decode",
        ) from exc
