"""``snakepit hardware [--json]``: the table, the JSON, and why a GPU is missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from snakepit import cli
from snakepit.hardware import capabilities, detect, format_json, format_table, identity

from ._doubles import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NvmlDouble,
    RecordedRunner,
    data,
    four_a100,
    machine,
    ok,
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakepit.cli", "hardware", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_table_in_a_subprocess_says_why_there_is_no_gpu() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    labels = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    for label in ("Platform", "Accelerator", "CPU", "CPU flags", "CUDA", "ROCm", "MPS", "Devices"):
        assert label in labels
    found = detect()
    cuda_line = next(line for line in lines if line.startswith("CUDA:"))
    if not found.cuda.available:
        assert cuda_line == f"CUDA:        not available -- {found.cuda.reason}"
    assert lines[-1] == "Devices:     " + ", ".join(found.devices)


def test_json_in_a_subprocess_matches_detection() -> None:
    result = run_cli("--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"hardware", "capabilities", "identity"}
    found = detect()
    assert document["hardware"]["accelerator"] == found.accelerator
    assert document["hardware"]["cpu"]["logical_cores"] == os.cpu_count()
    assert document["capabilities"] == capabilities(found).as_dict()
    assert document["identity"] == identity(found)


def test_main_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hardware"]) == 0
    assert "Devices:" in capsys.readouterr().out


def test_main_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hardware", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hardware"]["devices"][-1] == "cpu"


def test_table_of_the_a100_machine() -> None:
    found = detect(
        machine(
            load_nvml=lambda: NvmlDouble(gpus=four_a100()),
            environ={"CUDA_VISIBLE_DEVICES": "0,1,9"},
        )
    )
    text = format_table(found)
    assert "Accelerator: cuda" in text
    assert "CUDA:        2 of 4 GPU(s) visible, driver 535.104.05, CUDA 12.2, cuDNN unknown" in text
    assert "\n             note: CUDA_VISIBLE_DEVICES entry '9' matches no device" in text
    rows = [line for line in text.splitlines() if line.startswith("  cuda:")]
    assert len(rows) == 2
    assert "NVIDIA A100-SXM4-80GB" in rows[1]
    assert "40.09 GiB free of 80.00 GiB" in rows[1]
    cells = re.split(r"\s{2,}", rows[1].strip())
    assert cells == [
        "cuda:1",
        "NVIDIA A100-SXM4-80GB",
        "40.09 GiB free of 80.00 GiB",
        "8.0",
        "31 C",
        "87 %",
        "62 / 400 W",
    ]
    assert "cuDNN unknown (no cuDNN wheel found; torch not imported), via nvml" in text
    assert "Devices:     cuda:0, cuda:1, cpu" in text


def test_table_of_a_broken_driver() -> None:
    nvml = NvmlDouble(gpus=four_a100(), init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    text = format_table(detect(machine(load_nvml=lambda: nvml)))
    assert (
        "CUDA:        not available -- NVML init failed: Driver Not Loaded "
        "(the NVIDIA kernel module is not loaded); nvidia-smi not found"
    ) in text


def test_table_of_a_rocm_box() -> None:
    runner = RecordedRunner({"rocm-smi": ok(data("rocm_smi_2xMI210.json"))})
    text = format_table(detect(machine(run=runner)))
    assert "ROCm:        2 of 2 GPU(s) visible" in text
    assert "rocm:1  AMD Instinct MI210" in text
    assert "gfx90a" in text


def test_json_of_injected_hardware_round_trips() -> None:
    found = detect(machine(load_nvml=lambda: NvmlDouble(gpus=four_a100())))
    document = json.loads(format_json(found))
    assert document["hardware"]["cuda"]["devices"][3]["name"] == "NVIDIA A100-SXM4-80GB"
    assert document["capabilities"]["gpu_count"] == 4
