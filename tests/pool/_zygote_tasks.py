"""Worker functions for test_zygote: where a module was imported, random draws, starts."""

from __future__ import annotations

import os
import random
import time

import numpy as np

#: The process that imported this module (the template, when preloaded).
IMPORTED_IN = os.getpid()


def imported_in() -> int:
    return IMPORTED_IN


def draws_after(seconds: float) -> tuple[int, float, float]:
    time.sleep(seconds)
    return os.getpid(), random.random(), float(np.random.random())


def count_start(path: str) -> None:
    with open(path, "a") as file:
        file.write("x")


def loaded(names: list[str]) -> list[bool]:
    """Which of ``names`` this process has imported."""
    import sys

    return [name in sys.modules for name in names]


def lookup_missing() -> None:
    """Raise KeyError in the worker."""
    _ = {}["missing"]


def blas_state() -> tuple[int | None, str | None, str | None]:
    """OpenBLAS's thread count after a parallel product, and the two variables a pin sets."""
    import numpy as np

    from snakepit.worker._blas import PIN_ENV, openblas_threads

    square = np.ones((300, 300))
    square @ square
    return openblas_threads(), os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get(PIN_ENV)


def echo(value: object) -> object:
    """``value`` itself, back."""
    return value
