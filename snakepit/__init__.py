"""snakepit: crash-proof Python workers with zero-copy tensors.

The public surface is re-exported here; the code lives one level down by
capability (``zero_copy``, ``pool``, ``worker``, ``errors``).
"""

from pathlib import Path

from snakepit import errors
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

__version__ = "0.8.0"


def get_include() -> str:
    """Directory holding ``snakepit_core.h`` for C programs embedding the core."""
    return str(Path(__file__).parent / "include")


def get_library() -> str:
    """Path of ``libsnakepit_core.so``, the C core as a shared library."""
    return str(Path(__file__).parent / "lib" / "libsnakepit_core.so")


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
    "is_shared",
    "ref_of",
    "share",
    "share_table",
    "share_tensor",
    "table_from_ref",
    "zeros",
]
