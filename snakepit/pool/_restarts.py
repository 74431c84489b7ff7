"""What a worker's death means: the error its call gets, and when the worker comes back."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from snakepit.errors import WorkerCrashedError, WorkerError, WorkerTimeoutError

from ._exits import ExitInfo, ExitKind

__all__ = ["RestartPolicy", "exit_error"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a crashed worker comes back, and when its position is given up.

    More than ``max_crashes`` crashes within ``crash_window`` seconds give the
    position up; otherwise the first crash restarts at once and later ones
    after an exponential ``backoff = (base, cap)`` delay. ``grace`` is how
    long a worker asked to stop (or terminated) has before it is killed.
    """

    max_crashes: int
    crash_window: float
    backoff: tuple[float, float]
    grace: float

    def note_crash(self, crash_times: deque[float], now: float) -> None:
        """Add a crash at ``now`` and forget those older than the window."""
        crash_times.append(now)
        while crash_times and now - crash_times[0] > self.crash_window:
            crash_times.popleft()

    def gives_up(self, crashes: int) -> bool:
        """Whether a position with ``crashes`` in its window stays down."""
        return crashes > self.max_crashes

    def delay(self, crashes: int) -> float:
        """Seconds before restarting a position with ``crashes`` in its window."""
        if crashes <= 1:
            return 0.0
        base, cap = self.backoff
        return float(min(cap, max(base, 0.05) * 2 ** (crashes - 2)))


def exit_error(
    info: ExitInfo,
    *,
    timeout: float | None,
    worker_id: int,
    pid: int | None,
    native_traceback: str | None,
) -> WorkerError:
    """The error of a call whose worker died under it (or was killed for its timeout)."""
    if info.kind is ExitKind.timeout:
        # No timeout when the call's reply beat the kill: the worker was still
        # killed for it, but no call is left to name.
        limit = "its timeout" if timeout is None else f"its {timeout} s timeout"
        return WorkerTimeoutError(
            f"call exceeded {limit}; worker {worker_id} (pid {pid}) was terminated",
            timeout=timeout or 0.0,
            worker_id=worker_id,
            remote_traceback=native_traceback,
        )
    return WorkerCrashedError(
        f"worker {worker_id} (pid {pid}) died during the call: {info.description}",
        exit_kind=info.kind.value,
        signal=info.signal,
        exit_code=info.exit_code,
        worker_id=worker_id,
        remote_traceback=native_traceback,
    )
