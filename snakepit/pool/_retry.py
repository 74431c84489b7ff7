"""Retry policy for worker calls (see docs/crash-recovery.md).

Only calls marked ``idempotent=True`` are ever retried: running a
non-idempotent call twice because its worker died half-way could apply its
side effects twice. And only *infrastructure* failures are retried (a crashed
or timed-out worker); an exception raised by the user's code would just be
raised again, and an open circuit means "stop sending work".
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from snakepit.errors import (
    ExitKind,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)

__all__ = ["KNOWN_KINDS", "Backoff", "RetryPolicy", "error_kinds"]

Backoff = Literal["exponential", "linear", "constant"]

KNOWN_KINDS: frozenset[str] = frozenset(
    {"crash", "unavailable"} | {kind.value for kind in ExitKind}
)
"""Every kind name ``retryable`` may contain."""

# 2**64 times any sane base delay is already far past every cap; bounding the
# exponent avoids OverflowError for absurd attempt numbers.
_MAX_EXPONENT = 64


def error_kinds(error: BaseException) -> frozenset[str]:
    """The retry kinds an error belongs to (empty: never retryable).

    ``WorkerCrashedError`` → ``{"crash", <its exit_kind>}``;
    ``WorkerTimeoutError`` → ``{"timeout"}``;
    ``WorkerUnavailableError`` → ``{"unavailable"}``; anything else → ``{}``.
    """
    if isinstance(error, WorkerCrashedError):
        return frozenset({"crash", error.exit_kind})
    if isinstance(error, WorkerTimeoutError):
        return frozenset({ExitKind.timeout.value})
    if isinstance(error, WorkerUnavailableError):
        return frozenset({"unavailable"})
    return frozenset()


def _default_retryable() -> frozenset[str]:
    return frozenset({"crash", ExitKind.timeout.value, ExitKind.segfault.value})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying a failed idempotent call.

    Args:
        max_attempts: Total attempts including the first (1 disables retries).
        backoff: ``exponential`` (base·2^(n-1)), ``linear`` (base·n) or ``constant``.
        base_delay: Delay before the first retry, in seconds.
        max_delay: Upper bound of any delay, in seconds (applied after jitter too).
        jitter: Random spread as a fraction of the delay: 0.1 means ±10 %.
        retryable: Kinds to retry (see :func:`error_kinds`): ``crash`` matches
            every worker crash, an exit kind such as ``segfault`` or ``killed``
            matches crashes of that kind, ``timeout`` and ``unavailable`` match
            those errors.
        rng: Random source for jitter (a seeded ``random.Random`` in tests).

    Raises:
        ValueError: An argument is out of range or names an unknown kind.
    """

    max_attempts: int = 3
    backoff: Backoff = "exponential"
    base_delay: float = 0.05
    max_delay: float = 2.0
    jitter: float = 0.1
    retryable: frozenset[str] = field(default_factory=_default_retryable)
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff not in ("exponential", "linear", "constant"):
            raise ValueError(
                f"backoff must be 'exponential', 'linear' or 'constant', got {self.backoff!r}"
            )
        for name in ("base_delay", "max_delay", "jitter"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_delay < self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})"
            )
        if self.jitter > 1:
            raise ValueError(f"jitter is a fraction in [0, 1], got {self.jitter}")
        given: object = self.retryable
        if isinstance(given, str):
            # A bare string would silently become a set of characters.
            raise ValueError("retryable must be a collection of kind names, not a string")
        kinds = frozenset(self.retryable)
        unknown = kinds - KNOWN_KINDS
        if unknown:
            raise ValueError(
                f"unknown retryable kinds {sorted(unknown)}; known: {sorted(KNOWN_KINDS)}"
            )
        # Frozen dataclass: normalise any iterable to a frozenset in place.
        object.__setattr__(self, "retryable", kinds)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def with_retryable(self, kinds: Iterable[str]) -> RetryPolicy:
        """A copy of this policy retrying ``kinds`` instead."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            jitter=self.jitter,
            retryable=frozenset(kinds),
            rng=self.rng,
        )

    def base(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), capped, without jitter."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if self.backoff == "exponential":
            raw = self.base_delay * 2.0 ** min(attempt - 1, _MAX_EXPONENT)
        elif self.backoff == "linear":
            raw = self.base_delay * attempt
        else:
            raw = self.base_delay
        return min(raw, self.max_delay)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next.

        The capped base delay is spread by ±``jitter`` (so many callers that
        failed together do not retry in lock-step), then clamped to
        ``[0, max_delay]``: at the cap, jitter only shortens the delay.
        """
        base = self.base(attempt)
        if self.jitter and base:
            rng = self.rng if self.rng is not None else random
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return min(max(base, 0.0), self.max_delay)

    def should_retry(self, error: BaseException, attempt: int, idempotent: bool) -> bool:
        """Whether to retry after ``error`` ended attempt number ``attempt`` (1-based).

        True only if the call is idempotent, attempts remain, and the error is
        of a retryable kind. ``PythonError`` and ``CircuitOpenError`` are never
        retried (they have no retry kind).
        """
        if not idempotent or attempt >= self.max_attempts:
            return False
        return bool(error_kinds(error) & self.retryable)
