"""Worker functions for the ``gpu`` carrier tests: torch CUDA tensors in and out."""

from __future__ import annotations

import gc
import os
import signal
from typing import Any

from snakepit.zero_copy import _cuda_leases

KEPT: list[Any] = []


def describe(x: Any) -> tuple[str, str, float, int]:
    """(type, device, sum, this process's open peer allocations)."""
    return (
        f"{type(x).__module__}.{type(x).__qualname__}",
        str(x.device),
        float(x.double().sum().item()),
        _cuda_leases.open_count(),
    )


def negate(x: Any) -> None:
    """In place, on the worker's current stream (settled before the reply)."""
    x.neg_()


def make(count: int, value: float) -> Any:
    import torch

    return torch.full((count,), value, device="cuda")


def keep(x: Any) -> int:
    KEPT.append(x)
    return len(KEPT)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def keep_and_die(x: Any) -> None:
    KEPT.append(x)
    os.kill(os.getpid(), signal.SIGKILL)


def open_mappings() -> int:
    gc.collect()
    return _cuda_leases.open_count()


def outstanding() -> int:
    _cuda_leases.sweep()
    return _cuda_leases.outstanding()


def opened(*xs: Any) -> int:
    return _cuda_leases.open_count()
