"""Functions the ``snakepit demo`` command runs inside workers."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


def column_means(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Reduce a shared matrix in the worker (the matrix is not copied)."""
    result: np.ndarray[Any, Any] = array.mean(axis=0)
    return result


def scale_in_place(array: np.ndarray[Any, Any], factor: float) -> None:
    """Write into the caller's shared array."""
    array *= factor


def crash() -> None:
    """Segfault the worker, as buggy native code would."""
    ctypes.memset(0, 1, 1)
