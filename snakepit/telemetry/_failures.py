"""Failures are never silent: WARNING records on the ``snakepit`` logger by default.

The stdlib convention for libraries: log, and leave handlers to the
application. The handler is attached when the pool package loads (and again by each new
pool, if it was detached meanwhile), so a worker
crash, a restart held back by backoff, a circuit that opens, a health alert
or a lost session is a WARNING record on the ``snakepit`` logger even when the application set
nothing up; with no handler configured at all, Python's last-resort handler
prints it as one line on stderr. Configure or silence it as any library
logger (``logging.getLogger("snakepit").setLevel(logging.ERROR)``), or turn
it off with :func:`log_failures`.

Once :func:`~snakepit.telemetry.attach_logging` is attached, it logs these
events itself and this handler stays quiet, so each failure is one record.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from snakepit.telemetry import _events as ev
from snakepit.telemetry._bus import (
    Event,
    Measurements,
    Metadata,
    attach_many,
    detach,
    list_handlers,
)
from snakepit.telemetry._logging import format_event, full_logging_attached

__all__ = ["FAILURE_EVENTS", "LOGGER", "ensure_failure_logging", "log_failures"]

#: The logger failure records go to.
LOGGER = "snakepit"
_HANDLER_ID = "snakepit-failures"

#: What counts as a failure worth a record, and its level (recoveries are INFO).
FAILURE_EVENTS: dict[Event, int] = {
    ev.WORKER_CRASH: logging.WARNING,
    ev.WORKER_RESTART: logging.WARNING,  # only a restart held back (see _level)
    ev.CIRCUIT_OPEN: logging.WARNING,
    ev.CIRCUIT_HALF_OPEN: logging.INFO,
    ev.CIRCUIT_CLOSE: logging.INFO,
    ev.HEALTH_ALERT: logging.WARNING,
    ev.SESSION_LOST: logging.WARNING,
}

_lock = threading.Lock()
_wanted = True


def _level(event: Event, measurements: Measurements, metadata: Metadata) -> int | None:
    if event == ev.WORKER_RESTART and not measurements.get("delay"):
        return None  # restarting at once: the crash record already says enough
    if event == ev.HEALTH_ALERT and metadata.get("severity") == "critical":
        return logging.ERROR
    return FAILURE_EVENTS.get(event)


def _handle(event: Event, measurements: Measurements, metadata: Metadata, config: Any) -> None:
    if full_logging_attached():
        return
    level = _level(event, measurements, metadata)
    logger: logging.Logger = config
    if level is None or not logger.isEnabledFor(level):
        return
    logger.log(level, "%s", format_event(event, measurements, metadata))


def _attached() -> bool:
    return any(info.handler_id == _HANDLER_ID for info in list_handlers(("snakepit",)))


def ensure_failure_logging() -> None:
    """Attach the failure handler unless it is attached or was turned off (idempotent)."""
    with _lock:
        if _wanted and not _attached():
            attach_many(_HANDLER_ID, list(FAILURE_EVENTS), _handle, logging.getLogger(LOGGER))


def log_failures(enabled: bool = True) -> None:
    """Turn the default WARNING records of failures on (the default) or off.

    Off detaches the handler; pools created later do not attach it again
    until it is turned back on.
    """
    global _wanted
    with _lock:
        _wanted = enabled
        if not enabled:
            detach(_HANDLER_ID)
    if enabled:
        ensure_failure_logging()
