"""Worker affinity: worker_environment, assign_devices, and real pools using them."""

from __future__ import annotations

import pytest

import snakepit
from snakepit.errors import DeviceNotAvailableError
from snakepit.hardware import HardwareInfo, assign_devices, detect, worker_environment
from snakepit.hardware import _detect as detect_module

from . import _tasks
from ._doubles import NvmlDouble, RecordedRunner, data, h100, machine, ok
from .conftest import Seen

HIDE_ALL = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": ""}


def two_gpus() -> HardwareInfo:
    uuids = ["GPU-0d1e2f30-0000-4000-8000-000000000000", "GPU-9a8b7c6d-0000-4000-8000-000000000001"]
    return detect(machine(load_nvml=lambda: NvmlDouble(gpus=[h100(u) for u in uuids])))


# ----------------------------------------------------------- worker_environment


@pytest.mark.parametrize(
    ("device", "env"),
    [
        ("cpu", HIDE_ALL),
        ("cuda:0", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("cuda:3", {"CUDA_VISIBLE_DEVICES": "3"}),
        ("cuda", {"CUDA_VISIBLE_DEVICES": "0"}),
        ("gpu:2", {"CUDA_VISIBLE_DEVICES": "2"}),
        ("rocm:1", {"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "0"}),
        ("mps", {}),
        ("auto", {}),
    ],
)
def test_worker_environment(device: str, env: dict[str, str]) -> None:
    assert worker_environment(device, environ={}) == env


def test_cuda_index_counts_the_devices_this_process_sees() -> None:
    parent = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert worker_environment("cuda:1", parent) == {"CUDA_VISIBLE_DEVICES": "3"}
    uuid_parent = {"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    assert worker_environment("cuda:1", uuid_parent) == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}


def test_cuda_index_beyond_the_parent_mask_is_refused() -> None:
    with pytest.raises(DeviceNotAvailableError) as caught:
        worker_environment("cuda:2", {"CUDA_VISIBLE_DEVICES": "2,3"})
    assert caught.value.device == "cuda:2"
    assert caught.value.reason == "CUDA_VISIBLE_DEVICES='2,3' leaves only 2 device(s) visible here"
    with pytest.raises(DeviceNotAvailableError):
        worker_environment("cuda:0", {"CUDA_VISIBLE_DEVICES": ""})


def test_rocm_index_goes_through_hip_then_rocr_masks() -> None:
    parent = {"ROCR_VISIBLE_DEVICES": "4,5", "HIP_VISIBLE_DEVICES": "1,0"}
    assert worker_environment("rocm:0", parent) == {
        "ROCR_VISIBLE_DEVICES": "5",
        "HIP_VISIBLE_DEVICES": "0",
    }
    assert (
        worker_environment("rocm:1", {"ROCR_VISIBLE_DEVICES": "4,5"})["ROCR_VISIBLE_DEVICES"] == "5"
    )
    uuid = {"ROCR_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d"}
    assert worker_environment("rocm:1", uuid)["ROCR_VISIBLE_DEVICES"] == "GPU-3c4d"


def test_rocm_worker_environment_matches_rocm_detection() -> None:
    """Detecting inside the worker's environment finds exactly the device it was given."""
    runner = RecordedRunner(
        {"amd-smi static --asic --vram --driver --json": ok(data("amd_smi_static_4xMI300X.json"))}
    )
    parent_env = {"ROCR_VISIBLE_DEVICES": "1,2,3", "HIP_VISIBLE_DEVICES": "2,0"}
    parent = detect(machine(run=runner, environ=parent_env))
    for device in parent.rocm.devices:
        child_env = {**parent_env, **worker_environment(device.device, parent_env)}
        child = detect(machine(run=runner, environ=child_env))
        assert [d.physical_index for d in child.rocm.devices] == [device.physical_index]


def test_cuda_worker_environment_matches_cuda_detection() -> None:
    nvml = NvmlDouble(gpus=[h100(f"GPU-{i}0000000-0000-4000-8000-000000000000") for i in range(4)])
    parent_env = {"CUDA_VISIBLE_DEVICES": "3,1,2"}
    parent = detect(machine(load_nvml=lambda: nvml, environ=parent_env))
    for device in parent.cuda.devices:
        child_env = {**parent_env, **worker_environment(device.device, parent_env)}
        child = detect(machine(load_nvml=lambda: nvml, environ=child_env))
        assert [d.uuid for d in child.cuda.devices] == [device.uuid]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(DeviceNotAvailableError, match="unknown device"):
        worker_environment("tpu:0", {})


# --------------------------------------------------------------- assign_devices


def test_auto_spreads_round_robin_over_two_gpus(events: Seen) -> None:
    assert assign_devices("auto", 5, two_gpus()) == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
        "cuda:1",
        "cuda:0",
    ]
    selected = [m for e, _, m in events if e == ("snakepit", "device", "selected")]
    assert selected[-1]["selected"] == "cuda:0, cuda:1"
    assert selected[-1]["reason"] == "5 worker(s) spread round-robin over cuda:0, cuda:1"


def test_auto_without_gpu_is_cpu() -> None:
    assert assign_devices("auto", 3, detect(machine())) == ["cpu", "cpu", "cpu"]


def test_auto_on_a_mac_shares_mps() -> None:
    from snakepit.hardware import CommandResult
    from snakepit.hardware._apple import SYSCTL_ARGS

    runner = RecordedRunner(
        {"sysctl " + " ".join(SYSCTL_ARGS): CommandResult(0, data("sysctl_apple_m2_pro.txt"), "")}
    )
    mac = detect(machine(system="Darwin", machine="arm64", run=runner))
    assert assign_devices("auto", 2, mac) == ["mps", "mps"]


def test_explicit_lists_are_spread_and_not_checked_against_hardware() -> None:
    cpu_only = detect(machine())
    assert assign_devices(["cpu", "cuda:1"], 3, cpu_only) == ["cpu", "cuda:1", "cpu"]
    assert assign_devices("cuda", 2, cpu_only) == ["cuda:0", "cuda:0"]
    assert assign_devices(["rocm"], 1, cpu_only) == ["rocm:0"]


def test_auto_entries_in_a_list_take_the_next_gpu() -> None:
    assert assign_devices(["auto", "cpu"], 4, two_gpus()) == ["cuda:0", "cpu", "cuda:1", "cpu"]


def test_explicit_devices_do_not_detect(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_detection() -> HardwareInfo:
        raise AssertionError("detect() should not run for explicit devices")

    monkeypatch.setattr("snakepit.hardware._select.detect", no_detection)
    assert assign_devices(["cpu", "cuda:0"], 2) == ["cpu", "cuda:0"]


@pytest.mark.parametrize(("spec", "workers"), [("auto", 0), ([], 2)])
def test_assign_devices_rejects_bad_arguments(spec: str | list[str], workers: int) -> None:
    with pytest.raises(ValueError, match=r"must be >= 1|empty"):
        assign_devices(spec, workers, detect(machine()))


def test_assign_devices_rejects_unknown_devices() -> None:
    with pytest.raises(DeviceNotAvailableError):
        assign_devices(["cpu", "npu:0"], 2, detect(machine()))


# ------------------------------------------------------------------ real pools


def test_cpu_worker_sees_no_gpu() -> None:
    with snakepit.Pool(workers=1, device="cpu") as pool:
        assert pool.call(_tasks.visibility) == HIDE_ALL
        assert pool.health()["workers"][0]["device"] == "cpu"


def test_auto_pool_is_pinned_round_robin(
    fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detect_module, "_cache", two_gpus())  # what detect() returns now
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with snakepit.Pool(workers=3, device="auto") as pool:
        devices = [worker["device"] for worker in pool.health()["workers"].values()]
        assert devices == ["cuda:0", "cuda:1", "cuda:0"]
        assert pool.options(device="cuda:1").call(_tasks.visibility)["CUDA_VISIBLE_DEVICES"] == "1"
        assert pool.options(device="cuda:0").call(_tasks.visibility)["CUDA_VISIBLE_DEVICES"] == "0"


def test_auto_pool_on_this_machine(fresh_cache: None) -> None:
    found = detect()
    with snakepit.Pool(workers=1) as pool:
        device = pool.health()["workers"][0]["device"]
        assert device == assign_devices("auto", 1, found)[0]
        if device == "cpu":
            assert pool.call(_tasks.visibility) == HIDE_ALL
