"""Worker-side functions for the host-array tests."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._polars_tasks import shared_mapping_of


def where(value: Any) -> tuple[str, str | None]:
    """The type of ``value`` and the mapping its data lies in."""
    kind = f"{type(value).__module__}.{type(value).__name__}"
    if hasattr(value, "unsafe_buffer_pointer"):
        address = value.unsafe_buffer_pointer()
    elif isinstance(value, np.ndarray):
        address = value.ctypes.data
    elif hasattr(value, "data") and isinstance(value.data, np.ndarray):
        address = value.data.ctypes.data  # the test double of a foreign library
    else:
        address = np.from_dlpack(value).ctypes.data
    return kind, shared_mapping_of(address)


def jax_range(count: int) -> Any:
    import jax.numpy as jnp

    return jnp.arange(count, dtype=jnp.float32)


def total(value: Any) -> float:
    return float(np.from_dlpack(value).sum())


def echo(value: Any) -> Any:
    return value


def modules() -> list[str]:
    return sorted(name for name in ("jax", "jaxlib") if name in sys.modules)
