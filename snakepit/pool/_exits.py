"""Classification of worker process exits (SPEC section 2).

This is the one place that turns a return code into an exit kind; the pool,
the health monitor, the retry policy and the error messages all use it, so
they can never disagree about what "segfault" means.
"""

from __future__ import annotations

import os
import signal as _signal
from dataclasses import dataclass
from pathlib import Path

from snakepit.errors import ExitKind

__all__ = ["ExitInfo", "ExitKind", "classify_exit", "classify_lost", "oom_kill_count"]


@dataclass(frozen=True)
class ExitInfo:
    """The classified exit of one worker process.

    Attributes:
        kind: The classification.
        signal: The terminating signal number, if a signal ended the process.
        exit_code: The exit status, if the process exited by itself.
        description: One human-readable sentence for logs and error messages.
    """

    kind: ExitKind
    signal: int | None
    exit_code: int | None
    description: str

    @property
    def crashed(self) -> bool:
        """True for every kind except a normal exit and a cancellation's stop."""
        return self.kind not in (ExitKind.normal, ExitKind.cancelled)

    def during_call(self) -> ExitInfo:
        """This exit, known to have ended a worker while it ran a call.

        A worker exits by itself only when told to, so an exit status (not a
        signal) during a call means the call's code ended the process:
        ``sys.exit(n)``, ``exit()``, ``os._exit(n)``, or a library doing so.
        That is kind ``exit`` with its status, 0 and 1 included (not
        ``normal`` or ``python_error``, which describe the worker's own exits).
        """
        if self.exit_code is None or self.kind not in _OWN_EXIT_KINDS:
            return self
        return ExitInfo(
            ExitKind.exit,
            None,
            self.exit_code,
            f"the call ended the worker process with exit status {self.exit_code} "
            "(sys.exit, exit() or os._exit)",
        )


_OWN_EXIT_KINDS = frozenset({ExitKind.normal, ExitKind.python_error, ExitKind.unknown})


_SIGNAL_KINDS: dict[int, ExitKind] = {
    int(_signal.SIGSEGV): ExitKind.segfault,
    int(_signal.SIGABRT): ExitKind.abort,
    int(_signal.SIGBUS): ExitKind.bus_error,
    int(_signal.SIGFPE): ExitKind.floating_point_error,
    int(_signal.SIGKILL): ExitKind.killed,
    # A SIGTERM/SIGINT we did not send because of a timeout came from someone
    # else (an operator, a container runtime shutting down): "killed" is the
    # honest description; a timeout kill is reported as "timeout" instead.
    int(_signal.SIGTERM): ExitKind.killed,
    int(_signal.SIGINT): ExitKind.killed,
}


def _signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify_exit(
    returncode: int | None,
    *,
    timed_out: bool = False,
    oom_killed: bool = False,
    cancelled: bool = False,
) -> ExitInfo:
    """Classify a worker's exit from its return code.

    Args:
        returncode: ``Popen.returncode``: ``>= 0`` is an exit status, a negative
            value ``-N`` means the process was killed by signal ``N``. ``None``
            means no status is known (the process could not be reaped). A
            worker forked by the pool's template is reaped there; the wait
            status it reports is converted the same way
            (``os.waitstatus_to_exitcode``).
        timed_out: The supervisor killed the worker because a call exceeded its
            timeout. This overrides the signal: the kind is ``timeout`` (the
            signal is still recorded).
        oom_killed: The cgroup's OOM-kill counter rose while the worker died
            (see :func:`oom_kill_count`), so a SIGKILL is known to be the OOM killer.
        cancelled: The supervisor stopped the worker (SIGINT, then SIGKILL after
            the grace period) because its running call was cancelled. This
            overrides the signal too: the kind is ``cancelled``, not a crash.

    Rules: 0 → ``normal``; 1 → ``python_error``; other exit statuses →
    ``unknown`` (code kept); SIGSEGV → ``segfault``; SIGABRT → ``abort``; SIGBUS
    → ``bus_error``; SIGFPE → ``floating_point_error``; SIGKILL, SIGTERM, SIGINT
    → ``killed``; other signals → ``unknown`` (signal kept).
    """
    signum = -returncode if returncode is not None and returncode < 0 else None
    exit_code = returncode if returncode is not None and returncode >= 0 else None

    if cancelled:
        how = f" ({_signal_name(signum)})" if signum is not None else ""
        return ExitInfo(
            ExitKind.cancelled,
            signum,
            exit_code,
            f"stopped by the supervisor{how} because its running call was cancelled",
        )
    if timed_out:
        how = f" with {_signal_name(signum)}" if signum is not None else ""
        return ExitInfo(
            ExitKind.timeout,
            signum,
            exit_code,
            f"killed by the supervisor{how} after the call exceeded its timeout",
        )
    if returncode is None:
        return ExitInfo(ExitKind.unknown, None, None, "exit status unavailable")
    if signum is not None:
        kind = _SIGNAL_KINDS.get(signum, ExitKind.unknown)
        name = _signal_name(signum)
        if signum == _signal.SIGKILL:
            if oom_killed:
                text = "killed by the kernel OOM killer (SIGKILL): the memory limit was reached"
            else:
                text = (
                    "killed by SIGKILL; the kernel OOM killer is a likely cause if memory "
                    "was tight (check dmesg or the cgroup's memory.events)"
                )
        elif kind is ExitKind.segfault:
            text = "segmentation fault (SIGSEGV) in native code"
        elif kind is ExitKind.abort:
            text = "aborted (SIGABRT): failed assertion or uncaught C++ exception"
        elif kind is ExitKind.bus_error:
            text = "bus error (SIGBUS): unmapped or misaligned memory access"
        elif kind is ExitKind.floating_point_error:
            text = "arithmetic exception (SIGFPE), e.g. integer division by zero"
        elif kind is ExitKind.killed:
            text = f"terminated by {name} from outside the supervisor"
        else:
            text = f"terminated by {name}"
        return ExitInfo(kind, signum, None, text)
    if returncode == 0:
        return ExitInfo(ExitKind.normal, None, 0, "exited normally")
    if returncode == 1:
        return ExitInfo(
            ExitKind.python_error, None, 1, "exited with status 1 (uncaught Python exception)"
        )
    return ExitInfo(ExitKind.unknown, None, returncode, f"exited with status {returncode}")


def classify_lost(detail: str = "", *, memory_pressure: bool = False) -> ExitInfo:
    """Classify the loss of a worker whose parent (its host) is gone.

    A remote backend's host (a Ray actor) can die with its workers, or its
    node can leave the cluster; then no ``waitpid`` status exists, only the
    engine's text (``detail``). That is kind ``lost``, without a signal or exit
    code, unless the engine says it killed the host for memory pressure: then
    it is ``killed`` (SIGKILL is how such monitors kill), with OOM wording.
    """
    text = f": {detail}" if detail else ""
    if memory_pressure:
        return ExitInfo(
            ExitKind.killed,
            None,
            None,
            f"the worker's host was killed by the cluster's memory monitor{text}",
        )
    return ExitInfo(
        ExitKind.lost, None, None, f"the worker's host or node was lost (no exit status){text}"
    )


_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroup_events() -> list[Path]:
    """Candidate files holding this process's ``oom_kill`` counter.

    cgroup v2 keeps it in ``memory.events``; the v1 memory controller in
    ``memory.oom_control`` (same "key value" lines). The process's own
    cgroups come first, then the roots.
    """
    candidates: list[Path] = []
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        _, controllers, rel_path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        rel = rel_path.strip().lstrip("/")
        if controllers == "" and rel:  # v2: "0::/some/path"
            candidates.append(_CGROUP_ROOT / rel / "memory.events")
        elif "memory" in controllers.split(","):  # v1: "4:memory:/some/path"
            candidates.append(_CGROUP_ROOT / "memory" / rel / "memory.oom_control")
    candidates.append(_CGROUP_ROOT / "memory.events")
    candidates.append(_CGROUP_ROOT / "memory" / "memory.oom_control")
    return candidates


def oom_kill_count(events_path: str | os.PathLike[str] | None = None) -> int | None:
    """The cgroup ``oom_kill`` counter (v2 or v1), or ``None`` when it cannot be read.

    Read it before and after a worker dies of SIGKILL: if it rose, the kernel
    OOM killer did it (pass ``oom_killed=True`` to :func:`classify_exit`).

    Args:
        events_path: A ``memory.events`` (v2) or ``memory.oom_control`` (v1)
            file to read; by default this process's own cgroup's.
    """
    paths = [Path(events_path)] if events_path is not None else _own_cgroup_events()
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                try:
                    return int(value.strip())
                except ValueError:
                    return None
    return None
