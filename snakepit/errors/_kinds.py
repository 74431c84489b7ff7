"""How a worker process ended: the one definition of the exit kinds.

It sits in ``errors``, the lowest Python layer, so that every consumer keys
on the same enum: the classifier (``snakepit.pool._exits.classify_exit``),
the crash suggestions (:mod:`snakepit.errors._advice`), the retry kinds, the
health monitor and the log formatter. See ``docs/crash-recovery.md``.
"""

from __future__ import annotations

from snakepit._util import StrEnum

__all__ = ["ExitKind"]


class ExitKind(StrEnum):
    """How a worker process ended; each member is its own string value."""

    normal = "normal"
    """Exit status 0."""
    python_error = "python_error"
    """Exit status 1: the interpreter died of an uncaught exception."""
    segfault = "segfault"
    """SIGSEGV."""
    abort = "abort"
    """SIGABRT (``abort()``, failed C assertion, uncaught C++ exception)."""
    bus_error = "bus_error"
    """SIGBUS."""
    floating_point_error = "floating_point_error"
    """SIGFPE."""
    killed = "killed"
    """SIGKILL (including the kernel OOM killer), SIGTERM or SIGINT."""
    timeout = "timeout"
    """The supervisor killed it because a call ran past its timeout."""
    exit = "exit"
    """The call ended the process itself (``sys.exit``, ``exit()``,
    ``os._exit``) with the status in ``exit_code``, 0 included."""
    cancelled = "cancelled"
    """The supervisor stopped it because its running call was cancelled
    (``Pool.cancel(future, kill=True)``): not a crash."""
    lost = "lost"
    """The worker's host or node was lost (a Ray backend's host actor died, its
    node left the cluster): no exit status exists, only the engine's text."""
    unknown = "unknown"
    """Any other exit status or signal, or no status at all."""
