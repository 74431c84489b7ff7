"""Functions the benchmark cases run in worker processes.

They live in an importable module of the package (not in ``bench/``, which
an installed user does not have) so that snakepit workers and
``concurrent.futures.ProcessPoolExecutor`` workers both resolve them by name.
Only the standard library is imported here, numpy by the tasks that use
it: a worker that runs them pays for nothing else (a pool started without
a preload starts without numpy, as its no-op call needs none).
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def ignore_sigint() -> None:
    """Executor initializer: Ctrl-C is the parent's to handle (it shuts us down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_DEVNULL: list[Any] = []


def quiet_crashes() -> None:
    """loky initializer: :func:`ignore_sigint`, and crash dumps to /dev/null, not the terminal.

    loky turns ``faulthandler`` on in its workers unless it is on already:
    on here, writing nowhere, it costs a worker what it costs by default.
    """
    ignore_sigint()
    _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the worker
    faulthandler.enable(file=_DEVNULL[-1])


def noop() -> None:
    """Do nothing: the round trip is all that is measured."""
    return None


def pid_after(delay: float) -> int:
    """The worker's pid, after ``delay`` seconds (forces several workers up)."""
    time.sleep(delay)
    return os.getpid()


def first_element(array: Any) -> float:
    """Read one element of ``array`` (numpy or torch): the cost is the hand-off, not the work."""
    return float(array.reshape(-1)[0])


def first_value(table: Any) -> int:
    """Read the first value of a ``pyarrow.Table``'s first column."""
    return int(table.column(0)[0].as_py())


def shm_first_element(name: str, shape: tuple[int, ...], dtype: str) -> float:
    """Attach the ``multiprocessing.shared_memory`` segment ``name``, read one element, close.

    The caller created the segment and unlinks it; readers never unlink.
    """
    # Here, not at the top: it imports much of multiprocessing (~10 ms),
    # which every other task's worker would pay for at its first call.
    from multiprocessing import shared_memory

    import numpy as np

    segment = shared_memory.SharedMemory(name=name)
    try:
        view: np.ndarray[Any, Any] = np.ndarray(shape, dtype=np.dtype(dtype), buffer=segment.buf)
        value = float(view.reshape(-1)[0])
        del view  # no export of segment.buf may outlive close()
        return value
    finally:
        segment.close()


def total(array: np.ndarray[Any, Any]) -> float:
    """The sum of ``array`` as a Python float."""
    return float(array.sum())


def echo(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A fresh array with the size and contents of ``array``."""
    return array.copy()


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


def length(value: Any) -> int:
    """``len(value)``: the worker only has to receive the argument."""
    return len(value)
