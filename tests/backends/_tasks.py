"""Functions the backend tests run in workers (importable by reference)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then(path: str, seconds: float, value: int) -> int:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return value


def node_id() -> str:
    return os.environ.get("RAY_NODE_ID", "")
