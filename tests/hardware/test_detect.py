"""detect() as a whole: cache, telemetry, never raising, capabilities, identity, info."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from snakepit import hardware
from snakepit.hardware import (
    Capabilities,
    CudaInfo,
    HardwareInfo,
    capabilities,
    clear_cache,
    detect,
    identity,
    info,
)
from snakepit.hardware import _detect as detect_module

from ._doubles import NvmlDouble, a100, four_a100, machine
from .conftest import Seen

# ---------------------------------------------------------------------- the cache


def test_detect_is_cached_until_clear_cache(fresh_cache: None, events: Seen) -> None:
    first = detect()
    assert detect() is first
    assert detect() is first
    detected = [e for e in events if e[0] == ("snakepit", "hardware", "detected")]
    assert len(detected) == 1
    clear_cache()
    second = detect()
    assert second is not first
    assert second == first  # same machine, same answer
    assert len([e for e in events if e[0][1] == "hardware"]) == 2


def test_detect_with_sources_bypasses_the_cache(fresh_cache: None) -> None:
    cached = detect()
    other = detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    assert other.accelerator == "cuda"
    assert detect() is cached


def test_concurrent_first_calls_detect_once(fresh_cache: None, events: Seen) -> None:
    results: list[HardwareInfo] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(detect())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(r is results[0] for r in results)
    assert len([e for e in events if e[0][1] == "hardware"]) == 1


# ---------------------------------------------------------------------- telemetry


def test_detected_event_reports_choice_and_reasons(events: Seen) -> None:
    detect(machine())
    ((event, measurements, metadata),) = events
    assert event == ("snakepit", "hardware", "detected")
    assert 0.0 <= measurements["duration"] < 5.0
    assert metadata["accelerator"] == "cpu"
    assert metadata["gpu_count"] == 0
    assert set(metadata["reasons"]) == {"cuda", "rocm", "mps"}
    assert "pynvml" in metadata["reasons"]["cuda"]


def test_detected_event_for_a_gpu_machine(events: Seen) -> None:
    detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    metadata = events[-1][2]
    assert (metadata["accelerator"], metadata["gpu_count"]) == ("cuda", 4)
    assert "cuda" not in metadata["reasons"]


# ------------------------------------------------------------------ never raises


def test_a_detector_bug_degrades_to_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(sources: object) -> CudaInfo:
        raise KeyError("surprise")

    monkeypatch.setattr(detect_module, "detect_cuda", broken)
    found = detect(machine())
    assert not found.cuda.available
    assert found.cuda.reason == "CUDA detection failed: KeyError: 'surprise'"
    assert found.accelerator == "cpu"


def test_every_source_failing_still_gives_an_answer() -> None:
    def boom(*args: object) -> object:
        raise RuntimeError("boom")

    found = detect(
        machine(
            load_nvml=boom,
            run=boom,
            read_file=boom,
            torch=boom,
            package_version=boom,
            logical_cores=boom,
            physical_cores=boom,
            memory_total=boom,
        )
    )
    assert found.accelerator == "cpu"
    assert found.devices == ("cpu",)
    assert found.cuda.reason is not None
    assert "could not load pynvml: boom" in found.cuda.reason
    assert found.cpu.reason is not None


def test_detection_does_not_import_torch() -> None:
    code = (
        "import sys, snakepit.hardware as h; h.detect(); h.identity(); h.capabilities(); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


# ------------------------------------------------------------------ capabilities


def test_capabilities_of_a_gpu_machine() -> None:
    found = detect(
        machine(
            load_nvml=lambda: NvmlDouble(gpus=four_a100()),
            package_version={"nvidia-cudnn-cu12": "9.1.0.70"}.get,
        )
    )
    caps = capabilities(found)
    assert caps == Capabilities(
        cuda=True,
        cuda_version="12.2",
        cudnn=True,
        cudnn_version="9.1.0",
        mps=False,
        rocm=False,
        rocm_version=None,
        gpu_count=4,
        avx=True,
        avx2=True,
        avx512=True,
        fma=True,
        neon=False,
        sve=False,
    )
    assert caps.as_dict()["cuda_version"] == "12.2"
    assert json.loads(json.dumps(caps.as_dict())) == caps.as_dict()


def test_capabilities_without_argument_use_the_cache(fresh_cache: None) -> None:
    assert capabilities() == capabilities(detect())


# ----------------------------------------------------------------------- identity


def test_identity_of_the_a100_machine() -> None:
    found = detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    ident = identity(found)
    assert ident["accelerator"] == "cuda"
    assert ident["cuda"] == {
        "compute_capabilities": ["8.0", "8.0", "8.0", "8.0"],
        "cudnn_version": None,
        "version": "12.2",
    }
    assert ident["gpus"] == {"count": 4, "names": ["NVIDIA A100-SXM4-80GB"] * 4}
    assert ident["platform"] == {"machine": "x86_64", "system": "Linux"}
    assert "amx_tile" in ident["cpu"]["features"]
    assert "hypervisor" not in ident["cpu"]["features"]


def test_identity_ignores_volatile_values() -> None:
    idle = detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    busy_gpus = [dataclasses.replace(g, used=g.total // 2, temperature=83) for g in four_a100()]
    busy = detect(
        machine(
            load_nvml=lambda: NvmlDouble(gpus=busy_gpus, driver="535.129.03"),
            release="6.8.0-1009-aws",
            memory_total=lambda: 12345,
        )
    )
    assert idle.cuda.devices[0].temperature_c != busy.cuda.devices[0].temperature_c
    assert json.dumps(identity(idle)) == json.dumps(identity(busy))


def test_identity_changes_with_what_matters() -> None:
    four = identity(detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100()))))
    two = identity(detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100()[:2]))))
    newer = identity(detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100(), cuda=12040))))
    assert four != two
    assert four != newer


def test_identity_is_sorted_and_json_ready(fresh_cache: None) -> None:
    ident = identity()
    text = json.dumps(ident)
    assert text == json.dumps(ident, sort_keys=True)  # sorted at every level already
    assert json.loads(text) == ident
    assert ident == identity(detect())
    gpu_names = identity(
        detect(machine(load_nvml=lambda: NvmlDouble(gpus=[a100("GPU-b"), a100("GPU-a")])))
    )
    assert gpu_names["gpus"]["names"] == sorted(gpu_names["gpus"]["names"])


# --------------------------------------------------------------------------- info


def test_info_is_plain_json_data(fresh_cache: None) -> None:
    data = info()
    assert json.loads(json.dumps(data)) == data
    assert data["accelerator"] == detect().accelerator
    assert data["devices"][-1] == "cpu"
    assert set(data) >= {"accelerator", "cuda", "mps", "rocm", "cpu", "platform", "devices"}


def test_info_of_injected_hardware() -> None:
    found = detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    data = info(found)
    assert data["cuda"]["devices"][1]["uuid"] == found.cuda.devices[1].uuid
    assert data["cuda"]["devices"][0]["compute_capability"] == [8, 0]


def test_hardware_info_is_immutable() -> None:
    found = detect(machine())
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.accelerator = "cuda"  # type: ignore[misc]


def test_this_machine_has_no_gpu_unless_its_devices_say_so(fresh_cache: None) -> None:
    found = detect()
    nvidia = os.path.exists("/dev/nvidiactl")
    amd = os.path.exists("/dev/kfd")
    assert found.cuda.available == nvidia
    assert found.rocm.available == amd
    assert found.mps.available == (sys.platform == "darwin" and os.uname().machine == "arm64")
    if not (nvidia or amd):
        assert found.cuda.reason
        assert found.rocm.reason
        assert found.gpu_count == 0
        assert found.accelerator == "cpu"
        assert hardware.select("auto") == "cpu"


def test_the_package_stays_below_the_pool_and_never_imports_torch() -> None:
    package = Path(hardware.__file__).parent
    for module in sorted(package.glob("*.py")):
        source = module.read_text()
        assert "snakepit.pool" not in source, module.name
        assert not re.search(r"^\s*(import torch|from torch)", source, re.MULTILINE), module.name
