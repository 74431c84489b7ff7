"""Functions the benchmarks run in worker processes.

They live in an importable module (not in the test files) so that both
snakepit workers and ``concurrent.futures.ProcessPoolExecutor`` workers can
resolve them by reference.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import numpy as np


def noop() -> None:
    """Do nothing: the round trip is all that is measured."""
    return None


def pid_after(delay: float) -> int:
    """The worker's pid, after ``delay`` seconds (forces several workers up)."""
    time.sleep(delay)
    return os.getpid()


def first_element(a: np.ndarray[Any, Any]) -> float:
    """Read one element of ``a``: the cost is the transfer, not the work."""
    return float(a.reshape(-1)[0])


def total(a: np.ndarray[Any, Any]) -> float:
    """The sum of ``a`` as a Python float."""
    return float(a.sum())


def echo(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A fresh array of the same size and contents as ``a``."""
    return a.copy()


def segfault() -> None:
    """Crash the worker process with SIGSEGV (reads address 0)."""
    ctypes.string_at(0)


def busy(seconds: float) -> None:
    """Keep the CPU busy for ``seconds`` (steadier than sleeping)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def size_of(value: Any) -> int:
    """Bytes in ``value``: a bytes-like object, or a list of arrays."""
    if isinstance(value, list):
        return sum(int(item.nbytes) for item in value)
    return len(value)


def make_bytes(nbytes: int) -> bytes:
    """A fresh ``bytes`` of ``nbytes`` zeros (a result that travels inline)."""
    return bytes(nbytes)
