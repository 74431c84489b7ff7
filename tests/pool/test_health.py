"""Tests for the health monitor; time is a fake clock, nothing sleeps."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from snakepit import telemetry
from snakepit.pool._exits import ExitKind
from snakepit.pool._health import HealthAlert, HealthMonitor, HealthStatus

from ._observe import new_tag, observing


@pytest.fixture(scope="module", autouse=True)
def _observe_alerts() -> Iterator[None]:
    with observing():
        yield


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _monitor(**kwargs: int | float) -> tuple[HealthMonitor, FakeClock, list[HealthAlert]]:
    clock = FakeClock()
    monitor = HealthMonitor(clock=clock, **kwargs)  # type: ignore[arg-type]
    tag, _, alerts = new_tag()
    monitor.adopt(tag)
    return monitor, clock, alerts


def test_new_monitor_is_healthy_and_snapshot_is_json() -> None:
    monitor, _, alerts = _monitor()
    assert monitor.status() is HealthStatus.HEALTHY
    snap = json.loads(json.dumps(monitor.snapshot()))
    assert snap["status"] == "healthy"
    assert snap["reasons"] == []
    assert snap["crashes_in_window"] == 0
    assert alerts == []


def test_per_worker_and_device_stats() -> None:
    monitor, _, _ = _monitor()
    monitor.record_call(0, "cuda:0", True, 0.010)
    monitor.record_call(0, "cuda:0", False, 0.030)
    monitor.record_call(1, None, True, 0.5)
    monitor.record_crash(0, "cuda:0", "abort")
    w0 = monitor.worker_stats(0)
    assert (w0.calls, w0.failures, w0.crashes, w0.last_crash_kind) == (2, 1, 1, "abort")
    assert w0.mean_duration == pytest.approx(0.020)
    assert monitor.device_stats("cuda:0").calls == 2
    assert monitor.device_stats(None).mean_duration == pytest.approx(0.5)
    assert monitor.worker_stats(99).mean_duration is None
    snap = json.loads(json.dumps(monitor.snapshot()))
    assert snap["workers"]["0"]["crash_kinds"] == {"abort": 1}
    assert snap["devices"]["default"]["calls"] == 1
    assert snap["recent_crashes"][0]["exit_kind"] == "abort"


def test_exit_kind_enum_is_stored_as_plain_value() -> None:
    monitor, _, _ = _monitor()
    monitor.record_crash(3, "cpu", ExitKind.segfault)
    assert monitor.worker_stats(3).last_crash_kind == "segfault"
    assert json.loads(json.dumps(monitor.snapshot()))["crashes_by_kind"] == {"segfault": 1}


def test_status_ladder_by_crash_count() -> None:
    monitor, _, _ = _monitor(crash_alert=5, critical_crashes=10)
    monitor.record_crash(0, None, "killed")
    assert monitor.status() is HealthStatus.DEGRADED
    for _ in range(4):
        monitor.record_crash(0, None, "killed")
    assert monitor.status() is HealthStatus.UNHEALTHY
    for _ in range(5):
        monitor.record_crash(1, None, "killed")
    assert monitor.status() is HealthStatus.CRITICAL
    assert "10 crashes" in json.loads(json.dumps(monitor.snapshot()))["reasons"][0]


@pytest.mark.parametrize(
    ("failures", "calls", "status"),
    [
        (0, 10, HealthStatus.HEALTHY),
        (1, 20, HealthStatus.HEALTHY),  # 5 % < degraded threshold
        (1, 10, HealthStatus.DEGRADED),
        (5, 10, HealthStatus.UNHEALTHY),
        (9, 10, HealthStatus.CRITICAL),
        (1, 1, HealthStatus.DEGRADED),  # below min_calls: any failure degrades only
        (4, 4, HealthStatus.DEGRADED),
    ],
)
def test_status_by_failure_ratio(failures: int, calls: int, status: HealthStatus) -> None:
    monitor, _, _ = _monitor()
    for i in range(calls):
        monitor.record_call(0, "cpu", i >= failures, 0.001)
    assert monitor.status() is status


def test_crash_alert_fires_once_per_crossing() -> None:
    monitor, clock, alerts = _monitor(window=60.0, crash_alert=3)
    for _ in range(3):
        monitor.record_crash(2, "cuda:1", "abort")
    assert [a.kind for a in alerts] == ["high_crash_rate"]
    assert alerts[0].count == 3
    assert alerts[0].worker_id == 2
    assert alerts[0].device == "cuda:1"
    monitor.record_crash(2, "cuda:1", "abort")  # still above: no repeat
    assert len(alerts) == 1
    clock.advance(61.0)  # everything leaves the window: re-armed
    assert monitor.status() is HealthStatus.HEALTHY
    for _ in range(3):
        monitor.record_crash(2, "cuda:1", "abort")
    assert [a.kind for a in alerts] == ["high_crash_rate", "high_crash_rate"]
    assert json.loads(json.dumps(alerts[0].to_dict()))["threshold"] == 3


def test_a_call_that_prunes_crashes_re_arms_the_alert() -> None:
    # Calls skip the alert check unless they drop a crash from the window:
    # when they do, the alert must re-arm exactly as a status() would.
    monitor, clock, alerts = _monitor(window=60.0, crash_alert=3)
    for _ in range(3):
        monitor.record_crash(0, None, "abort")
        clock.advance(1.0)
    assert len(alerts) == 1
    clock.advance(57.5)  # the first crash leaves the window: 2 remain
    monitor.record_call(0, None, True, 0.001)
    monitor.record_crash(0, None, "abort")  # back at 3: a new crossing
    assert len(alerts) == 2
    assert monitor.worker_stats(0).calls == 1


def test_repeated_segfaults_alert() -> None:
    monitor, _, alerts = _monitor(segfault_alert=3, crash_alert=100)
    monitor.record_crash(0, None, "segfault")
    monitor.record_crash(0, None, "abort")
    monitor.record_crash(1, None, "segfault")
    assert alerts == []
    monitor.record_crash(1, None, "segfault")
    assert [a.kind for a in alerts] == ["repeated_segfaults"]
    assert "3 segmentation faults" in alerts[0].message
    assert monitor.status() is HealthStatus.UNHEALTHY


def test_window_prunes_old_events() -> None:
    monitor, clock, _ = _monitor(window=10.0)
    monitor.record_crash(0, "cpu", "killed")
    clock.advance(5.0)
    monitor.record_crash(1, "cpu", "killed")
    assert monitor.crashes_in_window() == 2
    assert monitor.crashes_in_window(worker_id=1) == 1
    assert monitor.crashes_in_window(device="cuda:0") == 0
    clock.advance(6.0)
    assert monitor.crashes_in_window() == 1
    clock.advance(5.0)
    assert monitor.crashes_in_window() == 0
    assert monitor.worker_stats(0).crashes == 1  # lifetime stats are kept


def test_history_is_bounded() -> None:
    monitor, _, _ = _monitor(max_events=10)
    for _ in range(50):
        monitor.record_call(0, None, True, 0.0)
    for _ in range(30):
        monitor.record_crash(0, None, "killed")
    snap = monitor.snapshot()
    assert snap["calls_in_window"] == 10
    assert snap["crashes_in_window"] == 10
    assert monitor.worker_stats(0).calls == 50
    assert monitor.worker_stats(0).crashes == 30


def test_raising_alert_handler_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    monitor, _, alerts = _monitor(crash_alert=1)

    def bad(*_: object) -> None:
        raise RuntimeError("pager offline")

    telemetry.attach("tests-bad-alert-handler", ("snakepit", "health", "alert"), bad)
    try:
        with caplog.at_level(logging.ERROR, logger="snakepit.telemetry._bus"):
            monitor.record_crash(0, None, "abort")
    finally:
        telemetry.detach("tests-bad-alert-handler")
    assert len(alerts) == 1
    assert isinstance(alerts[0], HealthAlert)
    assert any("pager offline" in (r.exc_text or "") for r in caplog.records)
    assert monitor.worker_stats(0).crashes == 1


def test_reset_clears_everything() -> None:
    monitor, _, alerts = _monitor(crash_alert=1)
    monitor.record_crash(0, None, "abort")
    monitor.reset()
    assert monitor.status() is HealthStatus.HEALTHY
    assert monitor.worker_stats(0).crashes == 0
    monitor.record_crash(0, None, "abort")
    assert len(alerts) == 2  # re-armed by the reset


def test_concurrent_recording() -> None:
    monitor, _, _ = _monitor(max_events=100_000)
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            monitor.record_call(worker % 2, "cpu", i % 10 != 0, 0.001)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    total = monitor.worker_stats(0).calls + monitor.worker_stats(1).calls
    assert total == threads * per_thread
    assert monitor.device_stats("cpu").failures == threads * per_thread // 10
    assert monitor.snapshot()["calls_in_window"] == threads * per_thread


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, "window"),
        ({"max_events": 0}, "max_events"),
        ({"crash_alert": 0}, "crash_alert"),
        ({"segfault_alert": 0}, "segfault_alert"),
        ({"min_calls": 0}, "min_calls"),
        ({"degraded_failure_ratio": 0.6, "unhealthy_failure_ratio": 0.5}, "ratios"),
        ({"critical_failure_ratio": 1.5}, "ratios"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HealthMonitor(**kwargs)  # type: ignore[arg-type]


def test_calls_after_a_reset_are_counted_afresh() -> None:
    monitor, _, _ = _monitor()
    monitor.record_call(0, "cuda:0", True, 0.5)
    monitor.reset()
    monitor.record_call(0, "cuda:0", False, 0.25)
    stats = monitor.worker_stats(0)
    assert (stats.calls, stats.failures, stats.total_duration) == (1, 1, 0.25)
    device = monitor.device_stats("cuda:0")
    assert (device.calls, device.failures) == (1, 1)
