"""select() and select_with_fallback(): choices, the fallback chain, errors, telemetry."""

from __future__ import annotations

import pickle

import pytest

from snakepit.errors import DeviceNotAvailableError
from snakepit.hardware import HardwareInfo, detect, parse_device, select, select_with_fallback

from ._doubles import NvmlDouble, four_a100, machine
from .conftest import Seen


@pytest.fixture(scope="module")
def gpus() -> HardwareInfo:
    return detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))


@pytest.fixture(scope="module")
def cpu_only() -> HardwareInfo:
    return detect(machine())


@pytest.mark.parametrize(
    ("preference", "device"),
    [
        ("auto", "cuda:0"),
        ("cuda", "cuda:0"),
        ("cuda:3", "cuda:3"),
        ("CUDA:2", "cuda:2"),
        ("gpu:1", "cuda:1"),
        (" cpu ", "cpu"),
    ],
)
def test_select_on_a_gpu_machine(gpus: HardwareInfo, preference: str, device: str) -> None:
    assert select(preference, gpus) == device


def test_select_auto_without_gpu_is_cpu_and_says_why(cpu_only: HardwareInfo, events: Seen) -> None:
    assert select("auto", cpu_only) == "cpu"
    ((event, _, metadata),) = events
    assert event == ("snakepit", "device", "selected")
    assert metadata["requested"] == "auto"
    assert metadata["selected"] == "cpu"
    assert metadata["reason"].startswith("auto: no GPU found (cuda: NVML: nvidia-ml-py")


def test_selected_event_names_the_gpu(gpus: HardwareInfo, events: Seen) -> None:
    select("auto", gpus)
    metadata = events[-1][2]
    assert metadata["selected"] == "cuda:0"
    assert "NVIDIA A100-SXM4-80GB, first of 4 visible CUDA device(s)" in metadata["reason"]


def test_missing_index_names_what_exists(gpus: HardwareInfo, events: Seen) -> None:
    with pytest.raises(DeviceNotAvailableError) as caught:
        select("cuda:4", gpus)
    error = caught.value
    assert error.device == "cuda:4"
    assert error.reason == (
        "cuda:4 does not exist: 4 cuda devices exist (cuda:0 to cuda:3); "
        "available here: cuda:0, cuda:1, cuda:2, cuda:3, cpu"
    )
    assert "device cuda:4 is not available" in str(error)
    assert error.suggestion is not None
    ((event, _, metadata),) = events
    assert event == ("snakepit", "device", "unavailable")
    assert metadata["requested"] == "cuda:4"
    assert metadata["available"] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cpu"]
    restored = pickle.loads(pickle.dumps(error))
    assert (restored.device, restored.reason) == (error.device, error.reason)


def test_cuda_on_a_cpu_machine_explains_why(cpu_only: HardwareInfo) -> None:
    with pytest.raises(DeviceNotAvailableError) as caught:
        select("cuda", cpu_only)
    assert caught.value.reason is not None
    assert caught.value.reason.startswith("no CUDA device: NVML: nvidia-ml-py (pynvml)")
    assert caught.value.reason.endswith("available here: cpu")


@pytest.mark.parametrize(
    ("preference", "why"),
    [
        ("mps", "MPS is not available: MPS needs macOS on Apple silicon (this is Linux)"),
        ("rocm:0", "no ROCm device: no ROCm tools (amd-smi, rocm-smi) found"),
    ],
)
def test_absent_backends(gpus: HardwareInfo, preference: str, why: str) -> None:
    with pytest.raises(DeviceNotAvailableError) as caught:
        select(preference, gpus)
    assert caught.value.reason is not None
    assert caught.value.reason.startswith(why)


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:0", "mps:1", "", "cuda:-1"])
def test_unknown_or_malformed_devices(gpus: HardwareInfo, bad: str) -> None:
    with pytest.raises(DeviceNotAvailableError, match="expected auto, cpu, cuda"):
        select(bad, gpus)


def test_parse_device() -> None:
    assert str(parse_device("cuda:7")) == "cuda:7"
    assert parse_device("hip:1").kind == "rocm"
    assert parse_device("auto").index is None


# ------------------------------------------------------------------ fallback chain


def test_fallback_takes_the_first_available(gpus: HardwareInfo) -> None:
    assert select_with_fallback(["cuda:1", "cpu"], gpus) == "cuda:1"
    assert select_with_fallback(["mps", "cuda:9", "cuda:2", "cpu"], gpus) == "cuda:2"


def test_fallback_to_cpu_reports_each_step(cpu_only: HardwareInfo, events: Seen) -> None:
    assert select_with_fallback(["cuda:1", "mps", "cpu"], cpu_only) == "cpu"
    names = [event for event, _, _ in events]
    assert names == [
        ("snakepit", "device", "unavailable"),
        ("snakepit", "device", "unavailable"),
        ("snakepit", "device", "selected"),
    ]
    assert [m["requested"] for _, _, m in events] == ["cuda:1", "mps", "cpu"]
    reason = events[-1][2]["reason"]
    assert reason.startswith("the CPU is always available (fell back: cuda:1: no CUDA device")
    assert "mps: MPS is not available" in reason


def test_fallback_all_unavailable(cpu_only: HardwareInfo) -> None:
    with pytest.raises(DeviceNotAvailableError) as caught:
        select_with_fallback(["cuda", "rocm", "mps"], cpu_only)
    error = caught.value
    assert error.device == "cuda, rocm, mps"
    assert error.reason is not None
    assert error.reason.startswith("cuda: no CUDA device")
    assert "; rocm: no ROCm device" in error.reason
    assert "; mps: MPS is not available" in error.reason
    assert error.reason.endswith("available here: cpu")


def test_fallback_needs_a_preference(cpu_only: HardwareInfo) -> None:
    with pytest.raises(ValueError, match="at least one"):
        select_with_fallback([], cpu_only)


def test_fallback_accepts_a_single_string(cpu_only: HardwareInfo) -> None:
    assert select_with_fallback("cpu", cpu_only) == "cpu"


def test_fallback_rejects_an_unknown_device_instead_of_skipping_it(gpus: HardwareInfo) -> None:
    with pytest.raises(DeviceNotAvailableError, match="unknown device"):
        select_with_fallback(["tpu", "cpu"], gpus)


def test_select_without_hardware_uses_detection(fresh_cache: None) -> None:
    assert select("cpu") == "cpu"
    assert select("auto") in detect().devices
