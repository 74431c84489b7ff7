"""Functions the cancellation tests run inside workers (importable by reference)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def sleep_then_mark(started: str, unwound: str, seconds: float) -> None:
    """Note the pid in ``started``, sleep; a ``finally`` that writes ``unwound``.

    ``started`` is written inside the ``try``: the test interrupts as soon as
    it reads the pid, which may be before ``write_text`` has returned.
    """
    try:
        Path(started).write_text(str(os.getpid()))
        time.sleep(seconds)
    finally:
        Path(unwound).write_text("unwound")


def sleep_ignoring_sigint(started: str, seconds: float) -> None:
    """Sleep deaf to SIGINT, as native code that never returns to Python is."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(started).write_text(str(os.getpid()))
    time.sleep(seconds)


def pid() -> int:
    return os.getpid()
