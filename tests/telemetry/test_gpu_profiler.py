"""The GPU memory profiler, against a fake NVML and against this machine's real one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from snakepit import telemetry
from snakepit.telemetry import _events as ev

GIB = 1 << 30


@dataclass
class FakeMemoryInfo:
    total: int
    free: int
    used: int


@pytest.fixture(autouse=True)
def _no_handler_left_attached() -> Iterator[None]:
    """The bus is global: every test detaches what it attached."""
    before = {info.handler_id for info in telemetry.list_handlers()}
    yield
    assert {info.handler_id for info in telemetry.list_handlers()} == before


class FakeNvml:
    """Test double for ``pynvml``: devices whose used memory grows by 1 MiB a sample.

    Counts ``nvmlInit``/``nvmlShutdown`` so tests can check they balance, and
    can be told to fail ``nvmlInit`` (no driver) or one device's memory query.
    """

    def __init__(
        self,
        names: tuple[str, ...] = ("Fake A100", "Fake H100"),
        *,
        init_error: Exception | None = None,
        broken_device: int | None = None,
    ) -> None:
        self.names = names
        self.init_error = init_error
        self.broken_device = broken_device
        self.inits = 0
        self.shutdowns = 0
        self.queries = 0
        self._lock = threading.Lock()

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        if not 0 <= index < len(self.names):
            raise IndexError(index)
        return ("handle", index)

    def nvmlDeviceGetName(self, handle: tuple[str, int]) -> bytes:
        return self.names[handle[1]].encode()  # old pynvml returned bytes

    def nvmlDeviceGetMemoryInfo(self, handle: tuple[str, int]) -> FakeMemoryInfo:
        index = handle[1]
        if index == self.broken_device:
            raise RuntimeError("GPU has fallen off the bus")
        with self._lock:
            self.queries += 1
            used = self.queries * (1 << 20) + index
        total = 80 * GIB
        return FakeMemoryInfo(total=total, free=total - used, used=used)


@pytest.fixture
def gpu_events() -> Iterator[list[tuple[dict[str, float], dict[str, Any]]]]:
    seen: list[tuple[dict[str, float], dict[str, Any]]] = []
    telemetry.attach(
        "test-gpu-events", ev.MEMORY_GPU, lambda e, m, md, c: seen.append((dict(m), dict(md)))
    )
    try:
        yield seen
    finally:
        telemetry.detach("test-gpu-events")


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_sample_reads_every_device_and_emits_events(
    gpu_events: list[tuple[dict[str, float], dict[str, Any]]],
) -> None:
    nvml = FakeNvml()
    profiler = telemetry.GpuMemoryProfiler(nvml=nvml)
    assert profiler.available
    assert profiler.reason is None
    assert profiler.devices == {0: "Fake A100", 1: "Fake H100"}
    first, second = profiler.sample()
    assert (first.device, first.name, first.used) == (0, "Fake A100", (1 << 20))
    assert (second.device, second.used) == (1, 2 * (1 << 20) + 1)
    assert first.free + first.used == first.total == 80 * GIB
    assert gpu_events == [
        (
            {"used": first.used, "free": first.free, "total": first.total},
            {"device": 0, "name": "Fake A100"},
        ),
        (
            {"used": second.used, "free": second.free, "total": second.total},
            {"device": 1, "name": "Fake H100"},
        ),
    ]
    assert nvml.inits == nvml.shutdowns == 2  # the probe, then the one-off sample


def test_history_is_bounded_and_peak_outlives_it() -> None:
    profiler = telemetry.GpuMemoryProfiler(history=3, nvml=FakeNvml(names=("g",)))
    taken = [profiler.sample()[0] for _ in range(5)]
    assert profiler.samples() == taken[-3:]
    assert profiler.samples(device=0) == taken[-3:]
    assert profiler.samples(device=1) == []
    assert profiler.peak() == {0: taken[-1].used}


def test_background_thread_samples_until_stopped_and_is_joined() -> None:
    nvml = FakeNvml()
    profiler = telemetry.GpuMemoryProfiler(interval=0.005, history=1000, nvml=nvml)
    profiler.start()
    thread = profiler._thread
    assert thread is not None
    assert thread.daemon
    assert profiler.running
    profiler.start()  # idempotent
    assert profiler._thread is thread
    wait_for(lambda: len(profiler.samples()) >= 6)
    profiler.stop()
    assert not thread.is_alive()
    assert not profiler.running
    count = len(profiler.samples())
    time.sleep(0.05)
    assert len(profiler.samples()) == count  # nothing after stop
    assert nvml.inits == nvml.shutdowns == 2  # probe + run, each shut down
    assert profiler.peak()[1] == max(s.used for s in profiler.samples(1))


def test_context_manager_starts_and_stops() -> None:
    with telemetry.GpuMemoryProfiler(interval=0.005, nvml=FakeNvml()) as profiler:
        wait_for(lambda: len(profiler.samples()) >= 2)
        thread = profiler._thread
    assert thread is not None
    assert not thread.is_alive()


def test_a_failing_device_is_skipped_and_the_thread_survives() -> None:
    nvml = FakeNvml(broken_device=1)
    with telemetry.GpuMemoryProfiler(interval=0.005, nvml=nvml) as profiler:
        wait_for(lambda: len(profiler.samples()) >= 3)
        assert profiler.running
    assert {s.device for s in profiler.samples()} == {0}


def test_no_driver_means_unavailable_and_inert() -> None:
    nvml = FakeNvml(init_error=RuntimeError("NVML Shared Library Not Found"))
    profiler = telemetry.GpuMemoryProfiler(nvml=nvml)
    assert not profiler.available
    assert profiler.reason is not None
    assert "NVML Shared Library Not Found" in profiler.reason
    with profiler:
        assert not profiler.running
    assert profiler.sample() == []
    assert profiler.samples() == []
    assert profiler.peak() == {}


def test_no_gpu_means_unavailable() -> None:
    profiler = telemetry.GpuMemoryProfiler(nvml=FakeNvml(names=()))
    assert not profiler.available
    assert profiler.reason == "NVML found no GPU"
    assert "unavailable" in repr(profiler)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        telemetry.GpuMemoryProfiler(interval=0, nvml=FakeNvml())
    with pytest.raises(ValueError, match="history"):
        telemetry.GpuMemoryProfiler(history=0, nvml=FakeNvml())


def test_this_machine_real_nvml_never_raises() -> None:
    profiler = telemetry.GpuMemoryProfiler(interval=0.01)
    if not profiler.available:
        assert isinstance(profiler.reason, str)
        assert profiler.reason
        with profiler:
            assert not profiler.running
        assert profiler.sample() == []
        return
    # A machine with a GPU: the real library gives real numbers.
    samples = profiler.sample()
    assert samples
    assert all(s.total > 0 and 0 <= s.used <= s.total for s in samples)
    with profiler:
        wait_for(lambda: len(profiler.samples()) > len(samples))
    assert not profiler.running
