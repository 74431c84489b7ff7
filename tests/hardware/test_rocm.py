"""ROCm detection from recorded amd-smi / rocm-smi JSON output."""

from __future__ import annotations

import pytest

from snakepit.hardware import CommandResult, detect, select
from snakepit.hardware._rocm import detect_rocm, parse_amd_smi, parse_rocm_smi

from ._doubles import GIB, MIB, Files, RecordedRunner, data, machine, ok

AMD_SMI_ARGS = "amd-smi static --asic --vram --driver --json"


def rocm_box(runner: RecordedRunner, environ: dict[str, str] | None = None) -> RocmBox:
    return RocmBox(runner, environ or {})


class RocmBox:
    """An AMD server: recorded tool output and /opt/rocm/.info/version."""

    def __init__(self, runner: RecordedRunner, environ: dict[str, str]) -> None:
        self.runner = runner
        self.sources = machine(
            run=runner,
            environ=environ,
            read_file=Files(
                {
                    "/opt/rocm/.info/version": data("rocm_info_version.txt"),
                    "/proc/cpuinfo": data("cpuinfo_xeon_8480.txt"),
                }
            ),
        )


def test_amd_smi_four_mi300x() -> None:
    box = rocm_box(RecordedRunner({AMD_SMI_ARGS: ok(data("amd_smi_static_4xMI300X.json"))}))
    info = detect_rocm(box.sources)
    assert info.available
    assert info.reason is None
    assert info.source == "amd-smi"
    assert info.rocm_version == "6.1.2"
    assert info.driver_version == "6.8.5"
    assert [d.device for d in info.devices] == ["rocm:0", "rocm:1", "rocm:2", "rocm:3"]
    first = info.devices[0]
    assert first.name == "AMD Instinct MI300X"
    assert first.gfx_arch == "gfx942"
    assert first.memory_total == 196592 * MIB
    assert first.uuid == "GPU-8a2f3c4d5e6f7081"
    assert box.runner.tools_called() == ["amd-smi"]


def test_full_detect_prefers_rocm_when_no_cuda() -> None:
    box = rocm_box(RecordedRunner({AMD_SMI_ARGS: ok(data("amd_smi_static_4xMI300X.json"))}))
    info = detect(box.sources)
    assert info.accelerator == "rocm"
    assert info.gpu_count == 4
    assert select("auto", info) == "rocm:0"
    assert select("rocm:3", info) == "rocm:3"


def test_amd_smi_older_list_layout_with_string_sizes() -> None:
    devices, driver = parse_amd_smi(data("amd_smi_static_MI250X_list.json"))
    assert [d.name for d in devices] == ["AMD Instinct MI250X"] * 2
    assert devices[1].memory_total == 64 * GIB
    assert devices[0].gfx_arch == "gfx90a"
    assert driver == "6.3.6"


def test_rocm_smi_when_amd_smi_is_absent() -> None:
    box = rocm_box(RecordedRunner({"rocm-smi": ok(data("rocm_smi_2xMI210.json"))}))
    info = detect_rocm(box.sources)
    assert info.available
    assert info.source == "rocm-smi"
    assert info.driver_version == "6.3.6"
    assert [d.name for d in info.devices] == ["AMD Instinct MI210"] * 2
    assert info.devices[1].memory_total == 68702699520
    assert info.devices[1].memory_used == 32 * GIB
    assert info.devices[0].uuid == "GPU-8f3c2a1b0d9e7f65"
    # amd-smi looked up on PATH and under /opt/rocm/bin, then rocm-smi answered.
    assert box.runner.tools_called() == ["amd-smi", "amd-smi", "rocm-smi"]
    assert box.runner.calls[1][0] == "/opt/rocm/bin/amd-smi"


def test_failing_amd_smi_falls_back_to_rocm_smi_and_reason_is_kept() -> None:
    box = rocm_box(
        RecordedRunner(
            {
                "amd-smi": CommandResult(1, "", "AMDSMI_STATUS_INIT_ERROR: amdgpu not loaded\n"),
                "rocm-smi": CommandResult(0, "not json at all", ""),
            }
        )
    )
    info = detect_rocm(box.sources)
    assert not info.available
    assert info.reason is not None
    assert "amd-smi failed (exit 1): AMDSMI_STATUS_INIT_ERROR" in info.reason
    assert "rocm-smi printed unreadable JSON" in info.reason


def test_no_rocm_tools() -> None:
    info = detect_rocm(machine())
    assert not info.available
    assert info.reason == "no ROCm tools (amd-smi, rocm-smi) found"


def test_hanging_amd_smi() -> None:
    box = rocm_box(RecordedRunner({"amd-smi": TimeoutError("slow")}))
    info = detect_rocm(box.sources)
    assert not info.available
    assert info.reason is not None
    assert "amd-smi did not answer within 0.5 s" in info.reason


def test_not_linux() -> None:
    runner = RecordedRunner({"amd-smi": ok(data("amd_smi_static_4xMI300X.json"))})
    info = detect_rocm(machine(system="Windows", run=runner))
    assert not info.available
    assert runner.calls == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HIP_VISIBLE_DEVICES": "2,3"}, [2, 3]),
        ({"ROCR_VISIBLE_DEVICES": "1,2,3", "HIP_VISIBLE_DEVICES": "0"}, [1]),
        ({"ROCR_VISIBLE_DEVICES": "3,1"}, [3, 1]),
        ({"ROCR_VISIBLE_DEVICES": "GPU-2c3d4e5f60718293"}, [2]),
        ({"CUDA_VISIBLE_DEVICES": "1"}, [1]),  # HIP reads it when HIP_VISIBLE_DEVICES is unset
        ({"HIP_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": ""}, [0]),
        ({"ROCR_VISIBLE_DEVICES": ""}, []),
    ],
)
def test_visibility_masks(environ: dict[str, str], expected: list[int]) -> None:
    box = rocm_box(
        RecordedRunner({AMD_SMI_ARGS: ok(data("amd_smi_static_4xMI300X.json"))}), environ
    )
    info = detect_rocm(box.sources)
    assert [d.physical_index for d in info.devices] == expected
    assert [d.index for d in info.devices] == list(range(len(expected)))
    assert info.available == bool(expected)
    if not expected:
        assert info.reason is not None
        assert "hides all 4 AMD GPUs" in info.reason


def test_parse_rocm_smi_rejects_non_object() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_rocm_smi("[1, 2]")
