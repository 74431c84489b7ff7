"""snakepit: crash-proof Python workers with zero-copy tensors.

The public surface is re-exported here; the code lives one level down by
capability (``zero_copy``, ``pool``, ``errors``, ``hardware``, ``telemetry``).
Names load on first use (PEP 562), so a worker process, which imports
``snakepit.worker``, never loads the supervisor (``snakepit.pool``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snakepit import errors, hardware, pool, telemetry, zero_copy
    from snakepit.errors import SnakepitError
    from snakepit.pool import Pool
    from snakepit.zero_copy import (
        ArrowRef,
        TensorRef,
        empty,
        from_dlpack,
        from_ref,
        is_shared,
        ref_of,
        share,
        share_table,
        share_tensor,
        table_from_ref,
        zeros,
    )

from snakepit._version import __version__

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "Pool": "snakepit.pool",
    "SnakepitError": "snakepit.errors",
    "ArrowRef": "snakepit.zero_copy",
    "TensorRef": "snakepit.zero_copy",
    "empty": "snakepit.zero_copy",
    "from_dlpack": "snakepit.zero_copy",
    "from_ref": "snakepit.zero_copy",
    "is_shared": "snakepit.zero_copy",
    "ref_of": "snakepit.zero_copy",
    "share": "snakepit.zero_copy",
    "share_table": "snakepit.zero_copy",
    "share_tensor": "snakepit.zero_copy",
    "table_from_ref": "snakepit.zero_copy",
    "zeros": "snakepit.zero_copy",
}


#: Subpackages reachable as attributes once ``import snakepit`` ran, as with an
#: eager package (``snakepit.telemetry.attach_logging()``).
_SUBPACKAGES = frozenset({"errors", "hardware", "pool", "telemetry", "zero_copy"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        value: Any = importlib.import_module(f"snakepit.{name}")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'snakepit' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def get_include() -> str:
    """Directory holding ``snakepit_core.h`` for C programs embedding the core."""
    return os.path.join(os.path.dirname(__file__), "include")


def get_library() -> str:
    """Path of ``libsnakepit_core.so``, the C core as a shared library."""
    return os.path.join(os.path.dirname(__file__), "lib", "libsnakepit_core.so")


__all__ = [
    "ArrowRef",
    "Pool",
    "SnakepitError",
    "TensorRef",
    "__version__",
    "empty",
    "errors",
    "from_dlpack",
    "from_ref",
    "get_include",
    "get_library",
    "hardware",
    "is_shared",
    "pool",
    "ref_of",
    "share",
    "share_table",
    "share_tensor",
    "table_from_ref",
    "telemetry",
    "zero_copy",
    "zeros",
]
