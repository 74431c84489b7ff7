"""The C embedding example builds against get_include()/get_library() and works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import snakepit

EXAMPLE = Path(__file__).parents[1] / "examples" / "embed_c" / "consumer.py"


def test_header_and_library_are_shipped() -> None:
    assert (Path(snakepit.get_include()) / "snakepit_core.h").is_file()
    assert Path(snakepit.get_library()).is_file()


def test_c_producer_shares_a_tensor_with_python() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "python sees data[:4]=[0.0, 0.5, 1.0, 1.5] sum=261888.0"
    # 42 + 1023 ones: C sees what Python wrote, in place.
    assert lines[1] == "c sees data[0]=42.0 sum=1065.0"
