"""An argument whose release in the worker takes a while, and says when it is done."""

from __future__ import annotations

import os
import time
from pathlib import Path


class SlowToFree:
    """Freed in the worker: waits ``seconds``, then writes ``freed`` to ``path``."""

    def __init__(self, path: str, seconds: float) -> None:
        self.path = path
        self.seconds = seconds

    def __del__(self) -> None:
        if Path(self.path).exists():  # only the worker's copy (the test's is made first)
            time.sleep(self.seconds)
            Path(self.path).write_text("freed")


def touch(value: SlowToFree) -> str:
    """Arm ``value``'s release (in the worker) and return at once."""
    Path(value.path).write_text("called")
    return "done"


class DiesWhenFreed:
    """Freed in the worker (only there: ``armed`` is set by the call), it ends the process."""

    armed = False

    def __del__(self) -> None:
        if self.armed:
            os._exit(9)


def arm(value: DiesWhenFreed) -> str:
    """Make ``value``'s release end this worker, and return at once."""
    value.armed = True
    return "done"
