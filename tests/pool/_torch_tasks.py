"""Worker functions for the torch tests (torch imported only when called)."""

from __future__ import annotations

from typing import Any

_KEPT: list[Any] = []


def describe(tensor: Any) -> tuple[str, str, tuple[int, ...], float]:
    """What arrived: its type, dtype, shape and sum (of real and imaginary parts)."""
    import torch

    values = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    return (
        type(tensor).__name__,
        str(tensor.dtype),
        tuple(tensor.shape),
        float(values.double().sum()),
    )


def ones(n: int, dtype_name: str) -> Any:
    import torch

    return torch.ones(n, dtype=getattr(torch, dtype_name))


def scale_in_place(tensor: Any, factor: float) -> float:
    tensor.mul_(factor)
    return float(tensor.double().sum())


def keep(tensor: Any) -> None:
    _KEPT.append(tensor)


def kept_sum() -> float:
    return float(sum(t.double().sum() for t in _KEPT))


def torch_imported() -> bool:
    import sys

    return "torch" in sys.modules
