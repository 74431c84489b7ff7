"""Crash barrier: supervised worker processes that survive anything their calls do.

::

    with snakepit.Pool(workers=4, timeout=30) as pool:
        pool.call(fn, x)                              # every keyword goes to fn
        pool.options(timeout=5, idempotent=True).call(fn, x)
        model = pool.options(session="model")         # calls pinned to one worker
        model.call(load, path)

Crashes are classified (:class:`ExitKind`), the worker replaced with backoff,
idempotent calls retried (:class:`RetryPolicy`), failing devices fenced off
(:class:`CircuitBreakerRegistry`) and the history kept
(:class:`HealthMonitor`). See docs/crash-recovery.md.
"""

from ._circuit import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from ._exits import ExitInfo, ExitKind, classify_exit
from ._health import HealthMonitor
from ._options import CallOptions, PoolView
from ._pool import Pool
from ._repro import write_repro
from ._retry import RetryPolicy

__all__ = [
    "CallOptions",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
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
