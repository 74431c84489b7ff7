"""bench/gpu: the device script and the CUDA IPC benchmark, exercised without a GPU.

The script runs on a lent GPU machine only; its dry run prints the steps and
runs the benchmark harness on the CPU, so what a GPU session will run is
kept working here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.gpu import cuda_ipc

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu" / "run_on_device.sh"


def test_the_dry_run_lists_every_step_and_runs_the_harness(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = (tmp_path / "steps.log").read_text()
    for step in ("== env", "== build", "== gpu-tests", "== double-tests", "== done"):
        assert step in steps
    assert "-m gpu" in steps
    summary = json.loads((tmp_path / "bench" / "cuda_ipc.json").read_text())
    assert summary["mode"] == "cpu"
    sizes = summary["peers"]["snakepit"]["sizes"]
    assert set(sizes) == set(cuda_ipc.CPU_SIZES)
    assert all(cell["calls"] > 0 for cell in sizes.values())
    assert "beyond no-op" in (tmp_path / "bench" / "cuda_ipc.txt").read_text()


def _cells(floor: list[float], by_size: dict[str, list[float]]) -> dict[tuple[str, str], Any]:
    cells = {("p", "noop"): cuda_ipc.Cell([[value] for value in floor])}
    for label, values in by_size.items():
        cells[("p", label)] = cuda_ipc.Cell([[value] for value in values])
    return cells


def test_cost_beyond_the_noop_is_taken_round_by_round() -> None:
    sizes = {"8B": 8, "1GiB": 1 << 30}
    peer = cuda_ipc.Peer("p", lambda: None, lambda tensor: tensor, lambda: None)
    # A machine that slows down in the second round: per-round floors cancel it.
    cells = _cells([100e-6, 300e-6], {"8B": [110e-6, 310e-6], "1GiB": [120e-6, 320e-6]})
    summary = cuda_ipc._summary("cuda", sizes, [peer], cells, {}, 1.0)
    entry = summary["peers"]["p"]
    assert entry["sizes"]["8B"]["beyond_noop_us"]["median"] == pytest.approx(10.0)
    assert entry["sizes"]["1GiB"]["beyond_noop_us"]["median"] == pytest.approx(20.0)
    assert entry["sizes"]["1GiB"]["beyond_noop_us"]["max"] == pytest.approx(20.0)
    assert entry["growth_smallest_to_largest"] == pytest.approx(2.0)
    assert "growth smallest->largest: 2.00x" in cuda_ipc.render(summary)
