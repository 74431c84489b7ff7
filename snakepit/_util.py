"""Small helpers shared by every layer; this module imports nothing from snakepit.

* :func:`format_bytes`: the one way snakepit writes a byte count for people
  (error messages, log lines, ``snakepit doctor``, ``snakepit hardware``).
* :data:`DTYPE_NAMES`: the element types a shared array may have.
* :func:`lazy_names`: a package's ``__getattr__`` and ``__dir__`` for names
  that load on first use (PEP 562).
* :func:`loaded_ndarray`: ``numpy.ndarray`` once something imported numpy
  (before that no object can be an array, and nothing here imports it).
* :func:`thread_count`: the threads of this process, as the kernel counts
  them (forking is safe only with one; see the worker template).
* :class:`StrEnum`: the base of snakepit's string enums (``ExitKind``,
  ``HealthStatus``, ``CircuitState``), whose members are their values:
  ``ExitKind.segfault == "segfault"`` and ``str(ExitKind.segfault)`` is
  ``"segfault"``.
"""

from __future__ import annotations

import enum
import importlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DTYPE_NAMES", "StrEnum", "format_bytes", "lazy_names", "loaded_ndarray"]

#: The element types snakepit shares (by these names in descriptors, DLPack
#: and advice texts): numpy's names, plus bfloat16.
DTYPE_NAMES: tuple[str, ...] = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def lazy_names(
    package: str, modules: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names
    load from ``modules`` (name -> defining module) on first use. A loaded
    name is stored in ``namespace`` (the package's globals), so later
    lookups skip ``__getattr__``."""

    def getattr_(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return getattr_, dir_


def loaded_ndarray() -> type | None:
    """``numpy.ndarray`` if numpy is imported in this process, else None."""
    numpy = sys.modules.get("numpy")
    return None if numpy is None else getattr(numpy, "ndarray", None)


def thread_count() -> int:
    """Threads of this process, native ones included (``threading`` counts only its own)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def format_bytes(n: float | None) -> str:
    """A byte count for people: ``512 bytes``, ``2.00 GiB``; ``None`` gives ``unknown``.

    Binary units (1 KiB = 1024 bytes) with two decimals from 1 KiB up, as
    ``nvidia-smi`` and the PyTorch allocator messages count; whole bytes below.
    """
    if n is None:
        return "unknown"
    if abs(n) < 1024:
        return f"{int(n)} bytes"
    value = float(n)
    for unit in _UNITS:
        value /= 1024.0
        if abs(value) < 1024.0 or unit == _UNITS[-1]:
            break
    return f"{value:.2f} {unit}"


if sys.version_info >= (3, 11):
    StrEnum = enum.StrEnum
else:  # pragma: no cover - Python 3.10 has no enum.StrEnum

    class StrEnum(str, enum.Enum):
        """``enum.StrEnum`` for Python 3.10: members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)
