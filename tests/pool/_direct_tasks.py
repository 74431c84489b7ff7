"""Worker-side functions for the tests of callers reading their own replies."""

from __future__ import annotations

import logging
import random
import threading
import time


def log_later(delay: float, message: str) -> int:
    """Return at once; log ``message`` from a thread of the worker ``delay`` s later."""

    def later() -> None:
        time.sleep(delay)
        logging.getLogger("snakepit_test.idle").warning(message)

    threading.Thread(target=later, daemon=True).start()
    return 1


def big_bytes(size: int) -> bytes:
    return b"\x5a" * size


def seeded_bytes(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes that the caller can make again."""
    return random.Random(seed).randbytes(size)


def big_bytearray(size: int) -> bytearray:
    return bytearray(b"\x5a" * size)
