"""``Pool(oom_fallback="cpu")``: idempotent calls that run out of GPU memory run on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import OutOfMemoryError
from snakepit.hardware import _detect
from snakepit.telemetry._events import CALL_FALLBACK, RETRY_ATTEMPT

from . import _fallback_tasks as tasks


@pytest.fixture(scope="module")
def one_gpu() -> Iterator[None]:
    """Hardware detection sees one GPU (an NVML double), so a pool can have a cuda:0 worker."""
    from tests.hardware._doubles import NvmlDouble, h100, machine

    gpu = h100("GPU-0d1e2f30-0000-4000-8000-000000000000")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        found = _detect.detect(machine(load_nvml=lambda: NvmlDouble(gpus=[gpu])))
        patch.setattr(_detect, "_cache", found)
        yield


@pytest.fixture(scope="module")
def pool(one_gpu: None) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(2, device=["cuda:0", "cpu"], oom_fallback="cpu") as pool:
        yield pool


@pytest.fixture
def events() -> Iterator[list[tuple[Any, dict[str, Any], dict[str, Any]]]]:
    seen: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []

    def record(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append((event, measurements, metadata))

    telemetry.attach("test-oom-fallback", [CALL_FALLBACK, RETRY_ATTEMPT], record)
    yield seen
    telemetry.detach("test-oom-fallback")


def test_an_idempotent_call_out_of_gpu_memory_runs_on_the_cpu(
    pool: snakepit.Pool, events: list[tuple[Any, dict[str, Any], dict[str, Any]]]
) -> None:
    on_gpu = pool.options(device="cuda:0", idempotent=True)
    assert on_gpu.call(tasks.infer, 21) == ("cpu", 42)
    assert [event for event, _, _ in events] == [CALL_FALLBACK]
    _, measurements, metadata = events[0]
    assert measurements == {"attempt": 2}
    assert metadata["from_device"] == "cuda:0"
    assert metadata["to_device"] == "cpu"
    assert "CUDA out of memory" in metadata["reason"]


def test_a_call_not_marked_idempotent_fails_with_the_oom(
    pool: snakepit.Pool, events: list[tuple[Any, dict[str, Any], dict[str, Any]]]
) -> None:
    with pytest.raises(OutOfMemoryError) as info:
        pool.options(device="cuda:0").call(tasks.infer, 1)
    assert info.value.device == "cuda:0"
    assert events == []


def test_host_memory_exhaustion_does_not_fall_back(
    pool: snakepit.Pool, events: list[tuple[Any, dict[str, Any], dict[str, Any]]]
) -> None:
    with pytest.raises(OutOfMemoryError):
        pool.options(device="cuda:0", idempotent=True).call(tasks.host_oom)
    assert events == []


def test_without_the_option_the_oom_is_raised(one_gpu: None) -> None:
    with snakepit.Pool(2, device=["cuda:0", "cpu"]) as plain, pytest.raises(OutOfMemoryError):
        plain.options(device="cuda:0", idempotent=True).call(tasks.infer, 1)


@pytest.mark.parametrize(
    ("device", "target", "needle"),
    [
        (["cuda:0"], "cpu", "needs a CPU worker"),
        (["cpu"], "cpu", "needs GPU workers"),
        (["cuda:0", "cpu"], "gpu", "must be None or 'cpu'"),
    ],
)
def test_a_pool_that_cannot_fall_back_is_refused(
    one_gpu: None, device: list[str], target: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        snakepit.Pool(1, device=device, oom_fallback=target)  # type: ignore[arg-type]
