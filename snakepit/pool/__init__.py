"""Crash barrier: supervised worker processes (SPEC §2)."""

from ._circuit import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from ._exits import ExitInfo, ExitKind, classify_exit
from ._health import HealthMonitor
from ._options import CallOptions, PoolView
from ._pool import Pool
from ._repro import write_repro
from ._retry import RetryPolicy

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "CallOptions",
    "CircuitState",
    "ExitInfo",
    "ExitKind",
    "HealthMonitor",
    "Pool",
    "PoolView",
    "RetryPolicy",
    "classify_exit",
    "write_repro",
]
