"""Every timeout a user gives the pool, validated one way."""

from __future__ import annotations

import math

__all__ = ["checked_timeout"]

#: Timeouts longer than this (about 31 years) mean no timeout: beyond it a
#: deadline is meaningless, and threading refuses waits over TIMEOUT_MAX.
_LONGEST_TIMEOUT = 1e9


def checked_timeout(timeout: object) -> float | None:
    """A timeout in seconds, validated; None for none (or for a huge one).

    Raises:
        TypeError: Not a number (booleans included).
        ValueError: NaN, zero or negative.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return None if timeout > _LONGEST_TIMEOUT else float(timeout)
