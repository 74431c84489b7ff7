"""A stand-in for ``torch`` with a CUDA allocator (``torch.cuda`` needs a GPU)."""

from __future__ import annotations

import sys
import types


def make(initialized: bool = True, devices: int = 2) -> types.ModuleType:
    """A module with the ``torch.cuda`` functions the telemetry reads."""
    torch = types.ModuleType("torch")
    cuda = types.SimpleNamespace(
        is_initialized=lambda: initialized,
        device_count=lambda: devices,
        memory_allocated=lambda index: 100 * (index + 1),
        memory_reserved=lambda index: 1000 * (index + 1),
    )
    torch.cuda = cuda  # type: ignore[attr-defined]
    return torch


def install() -> None:
    """In a worker: act as if its calls had imported torch and used CUDA."""
    sys.modules["torch"] = make()
