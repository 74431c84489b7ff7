"""Functions the pool tests run inside workers (importable by reference)."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
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
