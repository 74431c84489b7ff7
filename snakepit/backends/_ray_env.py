"""Importing ray with snakepit's environment defaults (loopback, no usage stats)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["import_ray"]

#: Set before ray is first imported (see the security rules in docs/scale-out.md):
#: no usage reporting, and "127.0.0.1" stays loopback on Linux too.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray() -> Any:
    """The ``ray`` module, with snakepit's environment defaults set before its first import.

    Raises ImportError with the install hint when ray is absent.
    """
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            "backend='ray' needs ray: pip install 'snakepit-ml[ray]' (or pip install ray)"
        ) from exc
    return ray
