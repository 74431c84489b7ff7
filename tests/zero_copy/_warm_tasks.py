"""Functions the warm-buffer tests run inside workers."""

from __future__ import annotations

from typing import Any

import numpy as np

from snakepit import _core


def warm_state() -> tuple[bool, dict[str, int]]:
    return bool(_core.warm_allocator_active()), dict(_core.warm_stats())


def times(array: np.ndarray[Any, Any], factor: float) -> np.ndarray[Any, Any]:
    result: np.ndarray[Any, Any] = array * factor
    return result
