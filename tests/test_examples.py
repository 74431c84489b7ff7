"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ml_demo_runs_and_shows_every_part() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ml_demo" / "run_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in (
        "1. hardware",
        "2. zero-copy",
        "3. structured errors",
        "4. crash",
        "5. telemetry",
    ):
        assert f"== {heading}" in out
    assert "selected device: " in out
    assert "DeviceNotAvailableError" in out
    assert "matches numpy: True" in out
    assert "ShapeError: " in out
    assert "DtypeError: " in out
    assert "worker died: segfault (signal 11)" in out
    assert "crashed in: File" in out
    assert "model.py" in out
    assert "next call served in" in out
    counts = dict(
        line.strip().split(": ")
        for line in out.splitlines()
        if line.strip().startswith("ml.") or line.strip().startswith("worker.")
    )
    assert counts["ml.inference"] == "2"
    assert counts["worker.crash"] == "1"
