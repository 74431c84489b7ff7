"""Functions the session and construction tests run in workers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tests.pool import _tasks

#: A session's state in the worker: what its calls (or its initializer) kept.
STATE: dict[str, Any] = {}


def remember(session: str, value: Any) -> int:
    STATE[session] = value
    return os.getpid()


def recall(session: str) -> Any:
    return STATE.get(session, "<none>")


def load_session(session: str, tag: str = "loaded") -> None:
    """A session initializer: builds the session's state from its name."""
    STATE[session] = f"{tag}:{session}:{os.getpid()}"


def refuse_session(session: str) -> None:
    raise LookupError(f"no such model: {session}")


def crash_in(session: str) -> None:
    del session
    _tasks.segfault()


def refuse_unless_missing(marker: str) -> None:
    """An initializer that works until ``marker`` exists, then raises."""
    if Path(marker).exists():
        raise ValueError("initializer refuses now")


def always_segfault() -> None:
    _tasks.segfault()


def crash_when(path: str) -> None:
    """Wait until ``path`` exists (the test queued what it wanted), then segfault."""
    while not Path(path).exists():
        time.sleep(0.005)
    _tasks.segfault()


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def flaky(marker: str, session: str) -> Any:
    """Segfault the first time (creating ``marker``), then recall the session's state."""
    path = Path(marker)
    if not path.exists():
        path.write_text("x")
        _tasks.segfault()
    return recall(session)


def first_raises_others_hang(directory: str) -> None:
    """An initializer: the first worker to run it raises, the others hang."""
    try:
        os.close(os.open(Path(directory) / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(600)
    else:
        raise ValueError("the first worker refuses")


def first_fast_others_slow(directory: str, seconds: float) -> None:
    """An initializer: the first worker to run it returns at once, the others sleep."""
    try:
        os.close(os.open(Path(directory) / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(seconds)
