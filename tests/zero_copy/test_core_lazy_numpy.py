"""The Cython core loads numpy's C API on first use, not at import: a
process that never touches an array never imports numpy through it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from snakepit import _core


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_importing_the_core_leaves_numpy_unimported() -> None:
    out = _run(
        """
        import sys
        import snakepit._core as core
        before = "numpy" in sys.modules
        core.Arena()  # shared memory itself needs no numpy
        print(before, "numpy" in sys.modules)
        """
    )
    assert out == "False False"


@pytest.mark.parametrize(
    "first_use",
    [
        "core.array_over(core.Arena().alloc(64).buffer(), (8,), numpy.dtype('float64'))",
        "core.copy_into(numpy.zeros(2), numpy.ones(2))",
        "core.install_warm_allocator(1 << 20, 1 << 24)",
    ],
    ids=["array_over", "copy_into", "warm_allocator"],
)
def test_each_numpy_function_loads_the_c_api_itself(first_use: str) -> None:
    # numpy imported by the caller, but the core's C API table still empty.
    out = _run(
        f"""
        import snakepit._core as core
        import numpy
        result = {first_use}
        print(type(result).__name__)
        """
    )
    assert out in ("ndarray", "NoneType", "bool")


def test_array_over_refuses_what_is_not_a_dtype() -> None:
    buffer = _core.Arena().alloc(64).buffer()
    with pytest.raises(TypeError, match="numpy dtype"):
        _core.array_over(buffer, (8,), types.SimpleNamespace(itemsize=1))
    assert _core.array_over(buffer, (8,), np.dtype(np.float64)).sum() == 0.0


def test_copy_into_names_what_is_not_an_array() -> None:
    with pytest.raises(TypeError, match="numpy arrays, not bytearray"):
        _core.copy_into(bytearray(8), np.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="numpy arrays, not list"):
        _core.copy_into(np.zeros(1), [0.0])  # type: ignore[arg-type]
