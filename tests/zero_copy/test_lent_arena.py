"""The C core's lent arena: numpy allocates large buffers in it, ``adopt_array``
sends them in place (in a process of its own: lending lasts for the process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from snakepit import _core

SCRIPT = Path(__file__).with_name("_lend_script.py")


def test_lending_adopting_growth_a_full_table_and_close() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_adopting_needs_a_c_contiguous_array_of_an_open_arena() -> None:
    arena = _core.Arena(prefault=False)
    try:
        with pytest.raises(ValueError, match="C-contiguous"):
            arena.adopt_array(np.ones((4, 4))[:, 0])
        with pytest.raises(TypeError):
            arena.adopt_array(b"bytes")
        assert arena.adopt_array(np.ones(4)) is None
    finally:
        arena.close()
    with pytest.raises(_core.CoreError):
        arena.adopt_array(np.ones(4))


def test_lending_needs_a_size() -> None:
    arena = _core.Arena(prefault=False)
    try:
        with pytest.raises(ValueError, match="min_bytes"):
            _core.lend_arena(arena, 0)
    finally:
        arena.close()
