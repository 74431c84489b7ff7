"""Functions the two-node tests run in workers (importable by reference)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def total(array: np.ndarray[Any, Any]) -> float:
    return float(array.sum())


def writable(array: np.ndarray[Any, Any]) -> bool:
    return bool(array.flags.writeable)


def write_first(array: np.ndarray[Any, Any], value: float) -> None:
    array[0] = value


def echo(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return array.copy()
