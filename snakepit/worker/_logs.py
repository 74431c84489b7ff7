"""Worker side of log forwarding: records go to the supervisor's ``logging``.

A handler on the worker's root logger turns each record that passes the
worker's levels into plain values (message already formatted, traceback as
text) and sends it over the worker's socket; the supervisor hands it to the
logger of the same name there, with the worker's id and pid as extra fields
(see ``snakepit/pool/_worker_logs.py``). A record logged while one is being
sent (a handler of ours logging, say) is dropped rather than recursing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ForwardingHandler", "install"]

#: Longest message and traceback text forwarded (the rest is cut).
_MAX_TEXT = 64 * 1024


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "... [cut]"


class ForwardingHandler(logging.Handler):
    """Sends every record it gets to the supervisor as plain values."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(level=logging.NOTSET)
        self._send = send
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "active", False):
            return
        self._busy.active = True
        try:
            exc_text = record.exc_text
            if record.exc_info and not exc_text:
                import traceback

                exc_text = "".join(traceback.format_exception(*record.exc_info))
            self._send(
                {
                    "name": str(record.name),
                    "levelno": int(record.levelno),
                    "msg": _cut(record.getMessage()),
                    "pathname": str(record.pathname),
                    "lineno": int(record.lineno),
                    "funcName": str(record.funcName),
                    "created": float(record.created),
                    "threadName": str(record.threadName),
                    "exc_text": _cut(exc_text) if exc_text else None,
                    "stack_info": _cut(record.stack_info) if record.stack_info else None,
                }
            )
        except Exception:
            self.handleError(record)
        finally:
            self._busy.active = False


def install(send: Callable[[dict[str, Any]], None]) -> ForwardingHandler:
    """Put a forwarding handler on the root logger; returns it."""
    handler = ForwardingHandler(send)
    logging.getLogger().addHandler(handler)
    return handler
