"""CUDA detection from a test double of NVML and recorded nvidia-smi output."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from snakepit.hardware import CommandResult, detect
from snakepit.hardware._cuda import cuda_version_text, detect_cuda, parse_nvidia_smi

from ._doubles import (
    A100_UUIDS,
    GIB,
    MIB,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NvmlDouble,
    RecordedRunner,
    data,
    fake_torch,
    four_a100,
    h100,
    machine,
    ok,
)


def nvidia_smi(csv: str, banner: str | None = None) -> RecordedRunner:
    """A runner whose nvidia-smi answers the CSV query and, plain, prints the banner."""

    def answer(argv: Sequence[str], timeout: float) -> CommandResult:
        if len(argv) == 1:
            return ok(banner if banner is not None else data("nvidia_smi_banner.txt"))
        assert argv[1].startswith("--query-gpu=index,name,uuid,memory.total")
        assert argv[2] == "--format=csv,noheader,nounits"
        return ok(csv)

    return RecordedRunner({"nvidia-smi": answer})


# ------------------------------------------------------------------ multi-GPU NVML


def test_four_a100_through_nvml() -> None:
    nvml = NvmlDouble(gpus=four_a100())
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert info.available
    assert info.reason is None
    assert info.source == "nvml"
    assert info.driver_version == "535.104.05"
    assert info.cuda_version == "12.2"
    assert info.physical_count == 4
    assert [d.device for d in info.devices] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    busy = info.devices[1]
    assert busy.name == "NVIDIA A100-SXM4-80GB"  # bytes from old pynvml decoded
    assert busy.uuid == A100_UUIDS[1]
    assert busy.memory_total == 80 * GIB
    assert busy.memory_used == 40871 * MIB
    assert busy.memory_free == 80 * GIB - 40871 * MIB
    assert busy.compute_capability == (8, 0)
    assert busy.temperature_c == 31
    assert (busy.utilization_gpu, busy.utilization_memory) == (87, 61)
    assert busy.power_w == pytest.approx(62.35)
    assert busy.power_limit_w == pytest.approx(400.0)


def test_nvml_is_shut_down_after_reading() -> None:
    nvml = NvmlDouble(gpus=four_a100())
    detect_cuda(machine(load_nvml=lambda: nvml))
    assert nvml.calls[0] == "nvmlInit"
    assert nvml.calls[-1] == "nvmlShutdown"
    assert nvml.calls.count("nvmlShutdown") == 1


def test_h100_machine_in_full_detect() -> None:
    nvml = NvmlDouble(gpus=[h100(f"GPU-{i}aaaaaaa-0000-0000-0000-000000000000") for i in range(8)])
    nvml.driver, nvml.cuda = "550.54.15", 12040
    info = detect(machine(load_nvml=lambda: nvml))
    assert info.accelerator == "cuda"
    assert info.gpu_count == 8
    assert info.cuda.cuda_version == "12.4"
    assert info.cuda.devices[7].compute_capability == (9, 0)
    assert info.devices[:2] == ("cuda:0", "cuda:1")
    assert info.devices[-1] == "cpu"
    assert "cuda" not in info.reasons


def test_unsupported_queries_leave_fields_empty() -> None:
    nvml = NvmlDouble(
        gpus=four_a100(),
        unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"},
    )
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert info.available
    assert all(d.power_w is None and d.temperature_c is None for d in info.devices)
    assert all(d.memory_total == 80 * GIB for d in info.devices)


def test_a_lost_gpu_is_listed_as_unusable_not_fatal() -> None:
    nvml = NvmlDouble(gpus=four_a100(), lost={2})
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert len(info.devices) == 4
    assert "GPU is lost" in info.devices[2].name
    assert info.devices[3].uuid == A100_UUIDS[3]


@pytest.mark.parametrize(
    ("number", "text"), [(12040, "12.4"), (12020, "12.2"), (11080, "11.8"), (13000, "13.0")]
)
def test_cuda_driver_version_text(number: int, text: str) -> None:
    assert cuda_version_text(number) == text


# ------------------------------------------------------------ CUDA_VISIBLE_DEVICES


def visible(value: str) -> list[str | None]:
    nvml = NvmlDouble(gpus=four_a100())
    info = detect_cuda(machine(load_nvml=lambda: nvml, environ={"CUDA_VISIBLE_DEVICES": value}))
    assert info.visible_devices == value
    assert info.physical_count == 4
    assert [d.index for d in info.devices] == list(range(len(info.devices)))
    return [d.uuid for d in info.devices]


def test_visible_devices_by_index_renumbers_in_mask_order() -> None:
    assert visible("2,0") == [A100_UUIDS[2], A100_UUIDS[0]]


def test_visible_devices_by_uuid_and_prefix() -> None:
    assert visible(f"{A100_UUIDS[3]},GPU-7a2e") == [A100_UUIDS[3], A100_UUIDS[1]]


def test_visible_devices_empty_hides_all_and_says_so() -> None:
    nvml = NvmlDouble(gpus=four_a100())
    info = detect_cuda(machine(load_nvml=lambda: nvml, environ={"CUDA_VISIBLE_DEVICES": ""}))
    assert not info.available
    assert info.devices == ()
    assert info.reason is not None
    assert "CUDA_VISIBLE_DEVICES='' hides all 4 GPUs" in info.reason


def test_visible_devices_invalid_entry_ends_the_list() -> None:
    assert visible("1,7,0") == [A100_UUIDS[1]]
    assert visible("-1") == []
    assert visible("1,1") == [A100_UUIDS[1]]
    assert visible("GPU-nonexistent,0") == []


# ------------------------------------------------------------------ failure modes


def test_pynvml_missing_and_no_nvidia_smi() -> None:
    info = detect_cuda(machine())  # load_nvml raises ImportError, no tools installed
    assert not info.available
    assert info.reason == "NVML: nvidia-ml-py (pynvml) is not installed; nvidia-smi not found"


def test_driver_library_missing() -> None:
    nvml = NvmlDouble(gpus=four_a100(), init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert not info.available
    assert info.reason is not None
    assert info.reason.startswith("NVML: libnvidia-ml.so.1 not found")
    assert "nvmlShutdown" not in nvml.calls  # never initialised, never shut down


def test_broken_driver_init_error_and_failing_nvidia_smi() -> None:
    nvml = NvmlDouble(gpus=four_a100(), init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    runner = RecordedRunner(
        {"nvidia-smi": CommandResult(9, data("nvidia_smi_broken_driver.txt"), "")}
    )
    info = detect(machine(load_nvml=lambda: nvml, run=runner))
    assert not info.cuda.available
    assert info.accelerator == "cpu"
    assert info.cuda.reason is not None
    assert info.cuda.reason.startswith("NVML init failed: Driver Not Loaded")
    assert "nvidia-smi failed (exit 9): NVIDIA-SMI has failed" in info.cuda.reason
    assert info.reasons["cuda"] == info.cuda.reason


def test_permission_error_is_explained() -> None:
    nvml = NvmlDouble(gpus=four_a100(), init_error=NVML_ERROR_NO_PERMISSION)
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert info.reason is not None
    assert "Insufficient Permissions" in info.reason
    assert "/dev/nvidia" in info.reason


def test_any_exception_from_nvml_degrades() -> None:
    class Exploding(NvmlDouble):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("segfault averted")

    nvml = Exploding(gpus=four_a100())
    info = detect_cuda(machine(load_nvml=lambda: nvml))
    assert not info.available
    assert info.reason is not None
    assert "NVML query failed: segfault averted" in info.reason
    assert nvml.calls[-1] == "nvmlShutdown"


def test_zero_gpus_reported_by_nvml() -> None:
    info = detect_cuda(machine(load_nvml=lambda: NvmlDouble(gpus=[])))
    assert not info.available
    assert info.reason == "nvml reports no NVIDIA GPU"
    assert info.driver_version == "535.104.05"


def test_hanging_nvidia_smi_times_out() -> None:
    runner = RecordedRunner({"nvidia-smi": TimeoutError("nvidia-smi did not answer")})
    info = detect_cuda(machine(run=runner, timeout=0.25))
    assert not info.available
    assert info.reason is not None
    assert info.reason.endswith("nvidia-smi did not answer within 0.25 s")


def test_macos_never_asks_nvml() -> None:
    nvml = NvmlDouble(gpus=four_a100())
    info = detect_cuda(machine(system="Darwin", machine="arm64", load_nvml=lambda: nvml))
    assert not info.available
    assert info.reason == "CUDA is not supported on macOS"
    assert nvml.calls == []


# ------------------------------------------------------------- nvidia-smi fallback


def test_nvidia_smi_fallback_when_pynvml_is_missing() -> None:
    runner = nvidia_smi(data("nvidia_smi_4xA100.csv"))
    info = detect_cuda(machine(run=runner))
    assert info.available
    assert info.source == "nvidia-smi"
    assert info.reason == (
        "NVML unusable (NVML: nvidia-ml-py (pynvml) is not installed); read from nvidia-smi"
    )
    assert info.driver_version == "535.104.05"
    assert info.cuda_version == "12.2"
    assert len(info.devices) == 4
    assert info.devices[1].memory_used == 40871 * MIB
    assert info.devices[1].compute_capability == (8, 0)
    assert info.devices[3].power_w is None  # "[N/A]"
    assert info.devices[3].utilization_gpu is None
    assert [d.uuid for d in info.devices] == list(A100_UUIDS)


def test_parse_nvidia_smi_skips_noise() -> None:
    devices, driver = parse_nvidia_smi("garbage line\n\n" + data("nvidia_smi_4xA100.csv"))
    assert len(devices) == 4
    assert driver == "535.104.05"


def test_nvidia_smi_fallback_respects_visible_devices() -> None:
    runner = nvidia_smi(data("nvidia_smi_4xA100.csv"))
    info = detect_cuda(machine(run=runner, environ={"CUDA_VISIBLE_DEVICES": "3"}))
    assert [(d.index, d.nvml_index) for d in info.devices] == [(0, 3)]


# ------------------------------------------------------------------------- cuDNN


def test_cudnn_from_installed_wheel_metadata() -> None:
    versions = {"nvidia-cudnn-cu12": "9.1.0.70"}
    info = detect_cuda(
        machine(load_nvml=lambda: NvmlDouble(gpus=four_a100()), package_version=versions.get)
    )
    assert info.cudnn_version == "9.1.0"
    assert info.cudnn_source == "package nvidia-cudnn-cu12"


@pytest.mark.parametrize(("number", "text"), [(90100, "9.1.0"), (8902, "8.9.2")])
def test_cudnn_from_already_imported_torch(number: int, text: str) -> None:
    torch = fake_torch(number)
    info = detect_cuda(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100()), torch=lambda: torch))
    assert info.cudnn_version == text
    assert info.cudnn_source == "torch.backends.cudnn"


def test_cudnn_unknown_without_wheel_or_imported_torch() -> None:
    info = detect_cuda(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    assert info.cudnn_version is None
    assert info.cudnn_source is not None
    assert info.cudnn_source == "no cuDNN wheel found; torch not imported"
