"""Worker-side functions for the log-forwarding tests."""

from __future__ import annotations

import logging


def log_some(message: str) -> int:
    logging.getLogger("snakepit_test.model").warning("loss is %s", message)
    logging.getLogger("snakepit_test.model").info("below the worker's level")
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("snakepit_test.other").exception("it failed")
    return 1


def verbose_worker() -> None:
    logging.getLogger().setLevel(logging.INFO)


def log_info() -> None:
    logging.getLogger("snakepit_test.model").info("now shown")
