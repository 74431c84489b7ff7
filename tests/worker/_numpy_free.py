"""Worker-side functions of test_worker_lazy_numpy: this module imports no
numpy, so resolving them in a worker does not import it either."""

from __future__ import annotations

import sys
from typing import Any


def worker_state() -> tuple[bool, bool]:
    """Whether numpy is imported here, and whether its warm allocator is on."""
    from snakepit import _core

    return "numpy" in sys.modules, bool(_core.warm_allocator_active())


def numpy_twice(n: int) -> Any:
    """``2 * arange(n)``, importing numpy here."""
    import numpy

    return numpy.arange(n, dtype=numpy.float64) * 2


def first(value: Any) -> float:
    """The first number of an array, or of the first array of a list."""
    return float(value[0][0] if isinstance(value, list) else value[0])


def keep(value: Any) -> None:
    """Keep ``value`` past the call: the worker takes a block reference of
    its own, recorded in its ledger."""
    global _held
    _held = value


def die() -> None:
    """End this worker as a crash would."""
    import os

    os._exit(137)


_held: Any = None
