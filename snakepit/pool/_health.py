"""Health monitoring of the worker pool (see docs/crash-recovery.md).

The monitor keeps a bounded, time-windowed history of call outcomes and worker
crashes, lifetime statistics per worker and per device, derives an overall
status, and raises alerts when crashes pile up.

Status rules, evaluated over the last ``window`` seconds (first match wins):

* ``critical``: at least ``critical_crashes`` crashes (default 10), or a
  failure ratio of at least ``critical_failure_ratio`` (0.9);
* ``unhealthy``: at least ``crash_alert`` crashes (default 5), at least
  ``segfault_alert`` segfaults (3), or a failure ratio of at least
  ``unhealthy_failure_ratio`` (0.5);
* ``degraded``: any crash, or a failure ratio of at least
  ``degraded_failure_ratio`` (0.1);
* ``healthy`` otherwise.

Failure ratios only count once ``min_calls`` (5) calls are in the window, so a
single failed call out of one does not make the pool critical; below that any
failed call makes it ``degraded``.

Alerts fire once per crossing: when the crash count (or segfault count) in the
window reaches its threshold; they re-arm once the count has fallen back below
it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from snakepit._util import StrEnum
from snakepit.errors import ExitKind
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import HEALTH_ALERT

__all__ = ["EntityStats", "HealthAlert", "HealthMonitor", "HealthStatus"]


class HealthStatus(StrEnum):
    """Overall health of a pool, from best to worst."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CRITICAL = "critical"


@dataclass(frozen=True)
class HealthAlert:
    """An alert raised by :class:`HealthMonitor`.

    Attributes:
        kind: ``high_crash_rate`` or ``repeated_segfaults``.
        message: Human-readable description.
        count: Crashes (or segfaults) in the window when it fired.
        threshold: The threshold that was reached.
        window: The window length in seconds.
        timestamp: Monitor clock time when it fired.
        worker_id: The worker of the crash that triggered it.
        device: The device of the crash that triggered it.
    """

    kind: str
    message: str
    count: int
    threshold: int
    window: float
    timestamp: float
    worker_id: int | None = None
    device: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "kind": self.kind,
            "message": self.message,
            "count": self.count,
            "threshold": self.threshold,
            "window": self.window,
            "timestamp": self.timestamp,
            "worker_id": self.worker_id,
            "device": self.device,
        }


@dataclass
class EntityStats:
    """Lifetime statistics of one worker or one device."""

    calls: int = 0
    failures: int = 0
    crashes: int = 0
    last_crash_kind: str | None = None
    total_duration: float = 0.0
    crash_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def mean_duration(self) -> float | None:
        """Mean call duration in seconds, ``None`` before the first call."""
        return self.total_duration / self.calls if self.calls else None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form."""
        return {
            "calls": self.calls,
            "failures": self.failures,
            "crashes": self.crashes,
            "last_crash_kind": self.last_crash_kind,
            "mean_duration": self.mean_duration,
            "crash_kinds": dict(self.crash_kinds),
        }


#: A call in the window: ``(time, ok)``, only what the window's ratios read
#: (the per-entity totals hold the rest). A plain tuple: a named one costs
#: a Python-level call to make, once per pool call.
_Call = tuple[float, bool]


@dataclass(frozen=True)
class _Crash:
    time: float
    worker_id: int
    device: str | None
    kind: str


class HealthMonitor:
    """Thread-safe crash and call history with derived status and alerts.

    Args:
        window: Length of the sliding window, in seconds.
        max_events: Bound on the stored call history and, separately, the
            crash history (oldest dropped first).
        crash_alert: Crashes in the window that raise ``high_crash_rate`` and
            make the status ``unhealthy``.
        segfault_alert: Segfaults in the window that raise
            ``repeated_segfaults`` and make the status ``unhealthy``.
        critical_crashes: Crashes in the window that make the status ``critical``.
        degraded_failure_ratio: See the module docstring.
        unhealthy_failure_ratio: See the module docstring.
        critical_failure_ratio: See the module docstring.
        min_calls: Calls in the window before failure ratios count.
        clock: Monotonic time source in seconds (injectable for tests).

    Raises:
        ValueError: A parameter is out of range.
    """

    def __init__(
        self,
        window: float = 60.0,
        max_events: int = 1000,
        crash_alert: int = 5,
        segfault_alert: int = 3,
        critical_crashes: int = 10,
        degraded_failure_ratio: float = 0.1,
        unhealthy_failure_ratio: float = 0.5,
        critical_failure_ratio: float = 0.9,
        min_calls: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be > 0, got {window}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        for name, value in (
            ("crash_alert", crash_alert),
            ("segfault_alert", segfault_alert),
            ("critical_crashes", critical_crashes),
            ("min_calls", min_calls),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 < degraded_failure_ratio <= unhealthy_failure_ratio <= critical_failure_ratio <= 1:
            raise ValueError(
                "failure ratios must satisfy 0 < degraded <= unhealthy <= critical <= 1"
            )
        self.window = float(window)
        self.max_events = max_events
        self.crash_alert = crash_alert
        self.segfault_alert = segfault_alert
        self.critical_crashes = critical_crashes
        self.degraded_failure_ratio = degraded_failure_ratio
        self.unhealthy_failure_ratio = unhealthy_failure_ratio
        self.critical_failure_ratio = critical_failure_ratio
        self.min_calls = min_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: deque[_Call] = deque(maxlen=max_events)
        self._crashes: deque[_Crash] = deque(maxlen=max_events)
        self._workers: dict[int, EntityStats] = {}
        self._devices: dict[str, EntityStats] = {}
        #: ``(worker_id, device)`` -> both of their stats: one lookup per call.
        self._stats_of: dict[tuple[int, str | None], tuple[EntityStats, EntityStats]] = {}
        #: The pool whose alerts these are (set by the first pool that uses it).
        self.pool: str | None = None
        self._crash_alert_active = False
        self._segfault_alert_active = False
        self._alerts_fired = 0

    # ------------------------------------------------------------------ alerts

    def adopt(self, pool: str) -> None:
        """Tag this monitor's alerts with ``pool`` (the first pool that uses it)."""
        with self._lock:
            if self.pool is None:
                self.pool = pool

    def _emit(self, alerts: list[HealthAlert]) -> None:
        # Outside the lock: handlers may call back into the monitor.
        if not alerts or not enabled(HEALTH_ALERT):
            return
        for alert in alerts:
            subject = (
                f"worker {alert.worker_id}" if alert.worker_id is not None else str(alert.device)
            )
            execute(
                HEALTH_ALERT,
                {"value": alert.count, "threshold": alert.threshold},
                {
                    "alert": alert.kind,
                    "severity": "critical" if alert.kind == "repeated_segfaults" else "warning",
                    "subject": subject,
                    "message": alert.message,
                    "device": alert.device,
                    "worker_id": alert.worker_id,
                    "pool": self.pool,
                    "health_alert": alert,
                },
            )

    # --------------------------------------------------------------- internals

    @staticmethod
    def _device_key(device: str | None) -> str:
        return device if device is not None else "default"

    def _prune(self, now: float) -> bool:
        """Drop what left the window; whether any crash did."""
        horizon = now - self.window
        calls = self._calls
        while calls and calls[0][0] < horizon:
            calls.popleft()
        crashes = self._crashes
        if not crashes or crashes[0].time >= horizon:
            return False
        while crashes and crashes[0].time < horizon:
            crashes.popleft()
        return True

    def _segfaults(self) -> int:
        return sum(1 for c in self._crashes if c.kind == ExitKind.segfault)

    def _check_alerts(self, now: float, trigger: _Crash | None) -> list[HealthAlert]:
        # Caller holds the lock and has pruned.
        alerts: list[HealthAlert] = []
        crashes = len(self._crashes)
        segfaults = self._segfaults()
        worker = trigger.worker_id if trigger else None
        device = trigger.device if trigger else None
        if crashes >= self.crash_alert:
            if not self._crash_alert_active:
                self._crash_alert_active = True
                alerts.append(
                    HealthAlert(
                        "high_crash_rate",
                        f"{crashes} worker crashes in the last {self.window:g} s "
                        f"(threshold {self.crash_alert})",
                        crashes,
                        self.crash_alert,
                        self.window,
                        now,
                        worker,
                        device,
                    )
                )
        else:
            self._crash_alert_active = False
        if segfaults >= self.segfault_alert:
            if not self._segfault_alert_active:
                self._segfault_alert_active = True
                alerts.append(
                    HealthAlert(
                        "repeated_segfaults",
                        f"{segfaults} segmentation faults in the last {self.window:g} s "
                        f"(threshold {self.segfault_alert}); native code is crashing",
                        segfaults,
                        self.segfault_alert,
                        self.window,
                        now,
                        worker,
                        device,
                    )
                )
        else:
            self._segfault_alert_active = False
        self._alerts_fired += len(alerts)
        return alerts

    def _refresh(self) -> tuple[float, list[HealthAlert]]:
        now = self._clock()
        self._prune(now)
        return now, self._check_alerts(now, None)

    def _status_locked(self) -> tuple[HealthStatus, list[str]]:
        crashes = len(self._crashes)
        segfaults = self._segfaults()
        calls = len(self._calls)
        failures = sum(1 for _, ok in self._calls if not ok)
        ratio = failures / calls if calls >= self.min_calls else None
        w = f"{self.window:g} s"
        if crashes >= self.critical_crashes:
            return HealthStatus.CRITICAL, [f"{crashes} crashes in {w}"]
        if ratio is not None and ratio >= self.critical_failure_ratio:
            return HealthStatus.CRITICAL, [f"{ratio:.0%} of calls failed in {w}"]
        reasons: list[str] = []
        if crashes >= self.crash_alert:
            reasons.append(f"{crashes} crashes in {w}")
        if segfaults >= self.segfault_alert:
            reasons.append(f"{segfaults} segfaults in {w}")
        if ratio is not None and ratio >= self.unhealthy_failure_ratio:
            reasons.append(f"{ratio:.0%} of calls failed in {w}")
        if reasons:
            return HealthStatus.UNHEALTHY, reasons
        if crashes:
            reasons.append(f"{crashes} crash{'es' if crashes != 1 else ''} in {w}")
        if ratio is not None and ratio >= self.degraded_failure_ratio:
            reasons.append(f"{ratio:.0%} of calls failed in {w}")
        elif ratio is None and failures:
            reasons.append(f"{failures} failed call{'s' if failures != 1 else ''} in {w}")
        if reasons:
            return HealthStatus.DEGRADED, reasons
        return HealthStatus.HEALTHY, []

    # ------------------------------------------------------------------ public

    def record_call(self, worker_id: int, device: str | None, ok: bool, duration: float) -> None:
        """Record the outcome and duration (seconds) of one call."""
        # Runs once per call: kept to the bare bookkeeping.
        duration = max(0.0, float(duration))
        with self._lock:
            now = self._clock()
            # Alerts change only with the crash count (they fire when a crash
            # is recorded and re-arm when crashes leave the window).
            alerts = self._check_alerts(now, None) if self._prune(now) else None
            self._calls.append((now, ok))
            pair = self._stats_of.get((worker_id, device))
            if pair is None:
                pair = self._stats_of[(worker_id, device)] = (
                    self._workers.setdefault(worker_id, EntityStats()),
                    self._devices.setdefault(self._device_key(device), EntityStats()),
                )
            worker, per_device = pair
            worker.calls += 1
            worker.total_duration += duration
            per_device.calls += 1
            per_device.total_duration += duration
            if not ok:
                worker.failures += 1
                per_device.failures += 1
        if alerts:
            self._emit(alerts)

    def record_crash(self, worker_id: int, device: str | None, exit_kind: str) -> None:
        """Record that a worker process died (``exit_kind`` as from ``classify_exit``)."""
        kind = str(exit_kind)  # an ExitKind is stored as its plain value
        with self._lock:
            now = self._clock()
            self._prune(now)
            crash = _Crash(now, worker_id, device, kind)
            self._crashes.append(crash)
            for stats in (
                self._workers.setdefault(worker_id, EntityStats()),
                self._devices.setdefault(self._device_key(device), EntityStats()),
            ):
                stats.crashes += 1
                stats.last_crash_kind = kind
                stats.crash_kinds[kind] = stats.crash_kinds.get(kind, 0) + 1
            alerts = self._check_alerts(now, crash)
        self._emit(alerts)

    def crashes_in_window(self, worker_id: int | None = None, device: str | None = None) -> int:
        """Crashes in the window, optionally only of one worker and/or device."""
        with self._lock:
            _, alerts = self._refresh()
            count = sum(
                1
                for c in self._crashes
                if (worker_id is None or c.worker_id == worker_id)
                and (device is None or c.device == device)
            )
        self._emit(alerts)
        return count

    def status(self) -> HealthStatus:
        """The overall status over the window (rules in the module docstring)."""
        with self._lock:
            _, alerts = self._refresh()
            status, _ = self._status_locked()
        self._emit(alerts)
        return status

    def worker_stats(self, worker_id: int) -> EntityStats:
        """A copy of the lifetime stats of ``worker_id`` (zeros if never seen)."""
        with self._lock:
            stats = self._workers.get(worker_id, EntityStats())
            return EntityStats(
                stats.calls,
                stats.failures,
                stats.crashes,
                stats.last_crash_kind,
                stats.total_duration,
                dict(stats.crash_kinds),
            )

    def device_stats(self, device: str | None) -> EntityStats:
        """A copy of the lifetime stats of ``device`` (zeros if never seen)."""
        with self._lock:
            stats = self._devices.get(self._device_key(device), EntityStats())
            return EntityStats(
                stats.calls,
                stats.failures,
                stats.crashes,
                stats.last_crash_kind,
                stats.total_duration,
                dict(stats.crash_kinds),
            )

    def snapshot(self) -> dict[str, object]:
        """JSON-serialisable report: status, reasons, window counts and per-entity stats."""
        with self._lock:
            now, alerts = self._refresh()
            status, reasons = self._status_locked()
            calls = len(self._calls)
            failures = sum(1 for _, ok in self._calls if not ok)
            by_kind: dict[str, int] = {}
            for crash in self._crashes:
                by_kind[crash.kind] = by_kind.get(crash.kind, 0) + 1
            snap: dict[str, object] = {
                "status": status.value,
                "reasons": reasons,
                "window": self.window,
                "calls_in_window": calls,
                "failures_in_window": failures,
                "failure_ratio": failures / calls if calls else None,
                "crashes_in_window": len(self._crashes),
                "crashes_by_kind": by_kind,
                "alerts_fired": self._alerts_fired,
                "workers": {str(k): v.to_dict() for k, v in sorted(self._workers.items())},
                "devices": {k: v.to_dict() for k, v in sorted(self._devices.items())},
                "recent_crashes": [
                    {
                        "age": now - c.time,
                        "worker_id": c.worker_id,
                        "device": c.device,
                        "exit_kind": c.kind,
                    }
                    for c in list(self._crashes)[-20:]
                ],
            }
        self._emit(alerts)
        return snap

    def reset(self) -> None:
        """Forget all history and statistics; alerts re-arm."""
        with self._lock:
            self._calls.clear()
            self._crashes.clear()
            self._workers.clear()
            self._devices.clear()
            self._stats_of.clear()
            self._crash_alert_active = False
            self._segfault_alert_active = False
            self._alerts_fired = 0
