"""torch's CUDA allocator in telemetry: ``("snakepit", "memory", "torch")`` events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.telemetry import _gpu
from snakepit.telemetry._events import MEMORY_TORCH

from . import _torch_stub

Seen = list[tuple[dict[str, Any], dict[str, Any]]]


@pytest.fixture
def seen() -> Iterator[Seen]:
    events: Seen = []

    def record(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        events.append((dict(measurements), dict(metadata)))

    telemetry.attach("test-torch-memory", MEMORY_TORCH, record)
    yield events
    telemetry.detach("test-torch-memory")


def test_without_torch_or_its_cuda_nothing_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(__import__("sys").modules, "torch", raising=False)
    assert _gpu.torch_memory() == []
    monkeypatch.setitem(__import__("sys").modules, "torch", _torch_stub.make(initialized=False))
    assert _gpu.torch_memory() == []


def test_the_allocator_is_read_per_device(monkeypatch: pytest.MonkeyPatch, seen: Seen) -> None:
    monkeypatch.setitem(__import__("sys").modules, "torch", _torch_stub.make())
    assert _gpu.torch_memory() == [
        _gpu.TorchMemorySample(0, 100, 1000),
        _gpu.TorchMemorySample(1, 200, 2000),
    ]
    monkeypatch.setattr(_gpu, "_last_torch_report", 0.0)
    now = time.monotonic() + 10
    assert _gpu.report_torch_memory(now)
    assert not _gpu.report_torch_memory(now + _gpu.TORCH_REPORT_SECONDS / 2)  # too soon
    assert _gpu.report_torch_memory(now + _gpu.TORCH_REPORT_SECONDS)
    assert seen[:2] == [
        ({"allocated": 100, "reserved": 1000}, {"device": "cuda:0"}),
        ({"allocated": 200, "reserved": 2000}, {"device": "cuda:1"}),
    ]
    assert len(seen) == 4


def test_a_worker_reports_its_allocator_after_calls(seen: Seen) -> None:
    with snakepit.Pool(1) as pool:
        pool.call(_torch_stub.install)  # from now on the worker "has" torch
        pool.call("operator:add", 1, 2)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen, "no torch allocator event from the worker"
    measurements, metadata = seen[0]
    assert measurements == {"allocated": 100, "reserved": 1000}
    assert metadata["device"] == "cuda:0"
    assert metadata["worker_id"] == 0
