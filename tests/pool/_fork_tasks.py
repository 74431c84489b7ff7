"""Worker functions for test_zygote_supervisor: what a worker forked from the supervisor sees."""

from __future__ import annotations

import logging
import os
import time
import weakref
from typing import Any

#: Set by the supervisor before its pool starts: workers forked from its copy see the value.
MARK = 0


def mark() -> int:
    return MARK


def open_paths() -> list[str]:
    """The files this process holds open (targets of /proc/self/fd)."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return paths


def environment(name: str) -> str | None:
    return os.environ.get(name)


def log_warning(text: str) -> int:
    logging.getLogger("tests.fork").warning(text)
    return os.getpid()


def parent_pid() -> int:
    return os.getppid()


def root_handlers() -> list[str]:
    return [type(handler).__name__ for handler in logging.root.handlers]


class _Kept:
    pass


_kept: list[Any] = []


def keep_a_finalized_object(seconds: float) -> int:
    """A finalizer of the worker's own: it registers ``weakref``'s exit hook here."""
    kept = _Kept()
    _kept.append(kept)
    weakref.finalize(kept, lambda: None)
    time.sleep(seconds)  # long enough that the pool's other worker takes the next one
    return os.getpid()


def emit(event: tuple[str, ...]) -> int:
    """Emit ``event`` here (a worker forwards it to its supervisor's handlers)."""
    from snakepit import telemetry

    telemetry.execute(event, {"value": 1.0}, {})
    return os.getpid()


def say(text: str) -> int:
    print(text, flush=True)
    return os.getpid()
