"""Functions the pool tests run inside workers (importable by reference)."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import snakepit

_STATE: dict[str, Any] = {}


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def env(name: str) -> str | None:
    return os.environ.get(name)


def segfault() -> None:
    ctypes.memset(0, 1, 1)  # write through a null pointer


def abort() -> None:
    os.abort()


def exit_3() -> None:
    os._exit(3)


def sleep_reporting_pid(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def spin_forever() -> None:
    while True:
        pass


def c_call_forever(ignore_sigterm: bool) -> None:
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctypes.CDLL(None).pause()  # blocks in C until a signal ends the process


def exceed_memory_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, hard))
    try:
        np.ones(1 << 31, dtype=np.uint8)  # 2 GiB > the 1 GiB address-space limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _Poison:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("cannot be unpickled here")


def poison() -> _Poison:
    return _Poison()


def unpicklable_result() -> threading.Lock:
    return threading.Lock()


def identity(value: Any) -> Any:
    return value


def total(array: np.ndarray[Any, Any]) -> float:
    return float(array.sum())


def fill(array: np.ndarray[Any, Any], value: float) -> None:
    array[...] = value


def fill_then_die(array: np.ndarray[Any, Any]) -> None:
    array[: array.size // 2] = 7
    os.kill(os.getpid(), signal.SIGKILL)


def scaled(array: np.ndarray[Any, Any], factor: float) -> np.ndarray[Any, Any]:
    return array * factor


def shared_result(n: int) -> np.ndarray[Any, Any]:
    out = snakepit.empty(n, "float64")
    out[:] = np.arange(n)
    return out


def remember(key: str, value: Any) -> int:
    _STATE[key] = value
    return os.getpid()


def recall(key: str) -> Any:
    return _STATE.get(key)


def crash_first_time(marker: str) -> None:
    """Initializer that segfaults on its first run only."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed once")
        segfault()


def always_raise() -> None:
    raise ValueError("initializer refuses")


def init_value(value: int) -> None:
    _STATE["init"] = value


def work_or_crash(value: int, crash: bool) -> int:
    if crash:
        segfault()
    return value * 2


def flaky(marker: str) -> str:
    """Segfault unless ``marker`` exists (then succeed); creates it when crashing."""
    path = Path(marker)
    if not path.exists():
        path.write_text("x")
        segfault()
    return "recovered"


def slow_total(array: np.ndarray[Any, Any], seconds: float) -> float:
    time.sleep(seconds)
    return float(array.sum())


def hold_then_die(ref: snakepit.TensorRef) -> None:
    """Take counted references on a block (kept in a global), then get killed."""
    _STATE["held"] = [snakepit.from_ref(ref), snakepit.from_ref(ref)]
    os.kill(os.getpid(), signal.SIGKILL)


def hold(ref: snakepit.TensorRef) -> int:
    _STATE["held"] = snakepit.from_ref(ref)
    return os.getpid()


def let_go() -> None:
    _STATE.pop("held", None)
    _STATE.pop("kept", None)


def keep_argument(array: np.ndarray[Any, Any]) -> None:
    """Keep a view of a borrowed argument beyond the call (a session's state)."""
    _STATE["kept"] = array[::2]


def kept_total() -> float:
    return float(_STATE["kept"].sum())


def size_of(value: Any) -> int:
    """Bytes in a bytes-like object, a str, or a list of arrays."""
    if isinstance(value, list):
        return sum(int(item.nbytes) for item in value)
    return len(value)


def make_bytes(nbytes: int) -> bytes:
    """``nbytes`` of 0x01, made once per size: only the transfer is measured."""
    key = f"bytes-{nbytes}"
    if key not in _STATE:
        _STATE[key] = b"\x01" * nbytes
    return _STATE[key]  # type: ignore[no-any-return]


def make_arrays(count: int, elements: int) -> list[np.ndarray[Any, Any]]:
    """``count`` float32 arrays (array i holds i), made once per shape: only
    the transfer is measured, not the worker's allocator."""
    key = f"arrays-{count}-{elements}"
    if key not in _STATE:
        _STATE[key] = [np.full(elements, index, dtype=np.float32) for index in range(count)]
    return _STATE[key]  # type: ignore[no-any-return]


_LOAD_ERRORS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
    "ValueError": ValueError,
}


def raise_on_load(kind: str) -> Any:
    """Run by the unpickler of a RaisesOnLoad: raises ``kind``."""
    raise _LOAD_ERRORS[kind]("raised while unpickling")


class RaisesOnLoad:
    """Pickles fine; unpickling it raises ``kind`` (a BaseException too)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (raise_on_load, (self.kind,))


def raises_on_load(kind: str) -> RaisesOnLoad:
    return RaisesOnLoad(kind)


def announce_huge_frame(nbytes: int, seconds: float) -> None:
    """Write a frame header announcing ``nbytes`` to the supervisor, then hang."""
    import struct
    import sys

    os.write(int(sys.argv[1]), struct.pack("<Q", nbytes))
    time.sleep(seconds)


def fork_grandchild_then_sleep(path: str, child_seconds: float, seconds: float) -> None:
    """Fork a grandchild that sleeps (holding the worker's sockets); record its pid."""
    child = os.fork()
    if child == 0:
        time.sleep(child_seconds)
        os._exit(0)
    Path(path).write_text(str(child))
    time.sleep(seconds)


def popen_grandchild_then(path: str, action: str) -> None:
    """Start ``sleep 60`` with subprocess, record its pid, then crash or sleep."""
    import subprocess

    child = subprocess.Popen(["sleep", "60"])
    Path(path).write_text(str(child.pid))
    if action == "segfault":
        segfault()
    time.sleep(60)


def sleep_then_value(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


def big_result(nbytes: int) -> np.ndarray[Any, Any]:
    return np.ones(nbytes, dtype=np.uint8)


def trim_arena() -> None:
    """Give the worker's unused shared memory back (unlinks freed regions)."""
    from snakepit import zero_copy

    zero_copy.trim()


def chaos_step(kind: str, size: int, seed: int) -> int:
    """One call of the chaos test: answer, crash, hang or raise by ``kind``."""
    if kind == "segfault":
        segfault()
    if kind == "abort":
        os.abort()
    if kind == "hang":
        time.sleep(60)
    if kind == "raise":
        raise ValueError(f"chaos {seed}")
    if kind == "array":
        return int(np.full(size, seed % 251, dtype=np.uint8).sum())
    return len(bytes(size)) + seed


def keywords(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """What the worker's function received as keyword arguments (and positionals)."""
    return {"args": list(args), **kwargs}


def square_unless(value: int, bad: int) -> int:
    """``value ** 2``; a ValueError naming the item when ``value == bad``."""
    if value == bad:
        raise ValueError(f"item {value} is bad")
    return value * value


def matmul_shapes(rows: int, inner: int) -> tuple[int, ...]:
    """The shape of ones((rows, 4)) @ ones((inner, 2)): a ShapeError unless inner == 4."""
    return tuple((np.ones((rows, 4)) @ np.ones((inner, 2))).shape)


def exit_on(value: int, bad: int) -> int:
    """``value``; ``sys.exit(5)`` (a BaseException, not an Exception) when ``value == bad``."""
    if value == bad:
        sys.exit(5)
    return value


def total_unless_first(marker: str, array: np.ndarray[Any, Any]) -> float:
    """Segfault on the first attempt (creating ``marker``), then sum ``array``."""
    path = Path(marker)
    if not path.exists():
        path.write_text("x")
        time.sleep(0.2)  # the caller changes its array meanwhile
        segfault()
    return float(array.sum())


def bulk_echo(arrays: list[np.ndarray[Any, Any]]) -> list[Any]:
    """The arguments back, and whether each arrived in shared memory, writable."""
    flags = [snakepit.is_shared(a) and bool(a.flags.writeable) for a in arrays]
    return [arrays, flags]


def keep_arguments(arrays: list[np.ndarray[Any, Any]]) -> None:
    """Keep one of a batch of borrowed arguments beyond the call."""
    _STATE["kept"] = arrays[-1][::2]


def describe_buffer(value: Any) -> tuple[str, int, str, tuple[int, ...], bool, int]:
    """What a bytes-like argument arrived as: type, size, format, shape,
    read-only flag and a checksum of its bytes."""
    view = memoryview(value)
    return (
        type(value).__name__,
        view.nbytes,
        view.format,
        tuple(view.shape or ()),
        view.readonly,
        sum(view.tobytes()[:: max(1, view.nbytes // 4096)]),
    )


def make_view(nbytes: int, fill: int) -> memoryview:
    """A writable memoryview of ``nbytes`` bytes set to ``fill``."""
    return memoryview(bytearray([fill]) * nbytes)


def mean_of_integers(count: int) -> float:
    """torch refuses the mean of an integer tensor: a DtypeError."""
    import torch

    return float(torch.zeros(count, dtype=torch.int64).mean())


def limit_address_space(nbytes: int) -> None:
    """Initializer: cap this worker's address space (RLIMIT_AS) for good."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, hard))


def allocate(nbytes: int) -> int:
    return int(np.ones(nbytes, dtype=np.uint8).nbytes)
