"""The console command: the end-to-end demo runs and says OK."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit.cli", "demo", "--mib", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "-> OK" in result.stdout
    assert "WorkerCrashedError(exit_kind='segfault')" in result.stdout
    assert "next call succeeded" in result.stdout


def test_unknown_command_is_rejected() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit.cli", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_python_dash_m_snakepit_runs_the_console_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "/dev/shm:" in result.stdout
    from snakepit import hardware

    cuda = hardware.detect().cuda
    if cuda.source == "nvml":
        assert "NVML: ok" in result.stdout
    else:
        # No usable NVML: doctor says so and why.
        assert f"NVML: unavailable: {cuda.reason}" in result.stdout
        assert "CUDA driver: none" in result.stdout
