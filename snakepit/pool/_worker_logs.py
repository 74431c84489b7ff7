"""Supervisor side of log forwarding: a worker's records, logged here.

Each record a worker's ``logging`` emitted arrives as plain values (see
``snakepit/worker/_logs.py``) and is handed to the logger of the same name
in this process, as if it had been logged here, with ``worker_id`` and
``worker_pid`` as extra fields (``%(worker_id)s`` in a format string). The
values come from another process: anything malformed is dropped.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["relay"]

_TEXT_FIELDS = ("name", "msg", "pathname", "funcName", "threadName")


def relay(body: Any, worker_id: int, pid: int) -> bool:
    """Log a forwarded record; returns whether it was well formed."""
    if not isinstance(body, dict):
        return False
    if not all(isinstance(body.get(field), str) for field in _TEXT_FIELDS):
        return False
    levelno, lineno, created = body.get("levelno"), body.get("lineno"), body.get("created")
    if type(levelno) is not int or type(lineno) is not int or type(created) is not float:
        return False
    for optional in ("exc_text", "stack_info"):
        if body.get(optional) is not None and not isinstance(body[optional], str):
            return False
    name = body["name"] or "root"
    logger = logging.getLogger(name) if name != "root" else logging.getLogger()
    if not logger.isEnabledFor(levelno):
        return True
    record = logging.makeLogRecord(
        {
            "name": name,
            "levelno": levelno,
            "levelname": logging.getLevelName(levelno),
            "msg": body["msg"],
            "args": None,
            "pathname": body["pathname"],
            "filename": body["pathname"].rpartition("/")[2],
            "module": body["pathname"].rpartition("/")[2].rpartition(".")[0],
            "lineno": lineno,
            "funcName": body["funcName"],
            "created": created,
            "msecs": (created % 1) * 1000,
            "threadName": body["threadName"],
            "process": pid,
            "processName": f"snakepit-worker-{worker_id}",
            "exc_text": body.get("exc_text"),
            "stack_info": body.get("stack_info"),
            "worker_id": worker_id,
            "worker_pid": pid,
        }
    )
    logger.handle(record)
    return True
