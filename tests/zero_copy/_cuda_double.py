"""Helpers for tests that drive the CUDA path through the driver test double.

The double (``csrc/tests/fake_cuda.c`` built as ``csrc/build/libfakecuda.so``)
implements the driver API over host shared memory; see its header comment for
the devices, memory kinds and pending work it simulates.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

from snakepit.zero_copy._cuda import DRIVER_ENV

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "csrc" / "build" / "libfakecuda.so"

#: fakecuMemAllocKind kinds, and the names snakepit reports for them.
KINDS = {"device": 0, "pool": 1, "vmm": 2, "managed": 3}


def fake_uuid(physical: int) -> str:
    """The UUID text the double gives physical device ``physical``."""
    return f"GPU-66616b65-0000-0000-0000-0000000000{physical:02x}"


def build_fake() -> str:
    """Path of the double, built on first use (``make test`` builds it in c-test)."""
    if not FAKE.exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "csrc"), "fakecuda"], check=True)
    return str(FAKE)


def load(path: str) -> ctypes.CDLL:
    """The double, with the ctypes signatures of its test helpers."""
    lib = ctypes.CDLL(path)
    lib.fakecuMemAllocKind.argtypes = [
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.c_size_t,
        ctypes.c_int,
    ]
    lib.fakecuQueueFill.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_size_t]
    lib.fakecuOpenDevice.argtypes = [ctypes.c_uint64]
    lib.fakecuMemFree.argtypes = [ctypes.c_uint64]
    return lib


def alloc(lib: ctypes.CDLL, nbytes: int, kind: str = "device") -> int:
    """A "device" allocation of ``kind`` (on the current context's device, else ordinal 0)."""
    ptr = ctypes.c_uint64()
    assert lib.fakecuMemAllocKind(ctypes.byref(ptr), nbytes, KINDS[kind]) == 0
    return ptr.value


def run_child(
    script: str, *args: str, fake_path: str, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that loads the double (bounded wait).

    ``env`` entries set to None are removed from the child's environment.
    """
    full_env = {**os.environ, DRIVER_ENV: fake_path}
    full_env.pop("CUDA_VISIBLE_DEVICES", None)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=full_env,
        cwd=ROOT,  # the script may import the test helpers (tests.zero_copy...)
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
