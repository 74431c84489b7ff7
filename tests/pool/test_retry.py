"""Tests for the retry policy."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from snakepit.errors import (
    CircuitOpenError,
    PythonError,
    WorkerCrashedError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.pool._retry import KNOWN_KINDS, RetryPolicy, error_kinds


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert policy.backoff == "exponential"
    assert policy.retryable == frozenset({"crash", "timeout", "segfault"})


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]),
        ("linear", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        ("constant", [0.1] * 6),
    ],
)
def test_delay_without_jitter(backoff: Any, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, base_delay=0.1, max_delay=1.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == pytest.approx(expected)


def test_jitter_stays_within_fraction_and_cap() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, jitter=0.25, rng=random.Random(7))
    seen: set[float] = set()
    for attempt in range(1, 8):
        base = policy.base(attempt)
        for _ in range(200):
            d = policy.delay(attempt)
            assert base * 0.75 - 1e-12 <= d <= min(base * 1.25, 1.0) + 1e-12
            seen.add(d)
    assert len(seen) > 100  # jitter really varies the delay


def test_seeded_rng_is_reproducible() -> None:
    a = RetryPolicy(rng=random.Random(1))
    b = RetryPolicy(rng=random.Random(1))
    assert [a.delay(n) for n in range(1, 5)] == [b.delay(n) for n in range(1, 5)]


def test_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.0)
    assert policy.delay(10_000) == 3.0


def test_zero_base_delay_is_never_negative() -> None:
    policy = RetryPolicy(base_delay=0.0, max_delay=0.0, jitter=1.0, rng=random.Random(3))
    assert all(policy.delay(n) == 0.0 for n in range(1, 20))


def test_attempt_is_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy().delay(0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"backoff": "fibonacci"}, "backoff"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"base_delay": float("inf")}, "base_delay"),
        ({"max_delay": float("nan")}, "max_delay"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "max_delay"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"retryable": "crash"}, "retryable"),
        ({"retryable": frozenset({"crash", "bogus"})}, "bogus"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)


def test_retryable_accepts_any_iterable() -> None:
    policy = RetryPolicy(retryable=["timeout", "abort"])  # type: ignore[arg-type]
    assert policy.retryable == frozenset({"timeout", "abort"})
    assert "segfault" in KNOWN_KINDS
    assert "unavailable" in KNOWN_KINDS


def test_error_kinds() -> None:
    assert error_kinds(WorkerCrashedError(exit_kind="segfault")) == {"crash", "segfault"}
    assert error_kinds(WorkerTimeoutError(timeout=1.0)) == {"timeout"}
    assert error_kinds(WorkerUnavailableError()) == {"unavailable"}
    assert error_kinds(PythonError("x")) == frozenset()
    assert error_kinds(CircuitOpenError(circuit="global")) == frozenset()
    assert error_kinds(ValueError()) == frozenset()


CRASH = WorkerCrashedError(exit_kind="abort", signal=6)
SEGV = WorkerCrashedError(exit_kind="segfault", signal=11)
TIMEOUT = WorkerTimeoutError(timeout=1.0)


@pytest.mark.parametrize(
    ("error", "attempt", "idempotent", "retryable", "expected"),
    [
        (CRASH, 1, True, None, True),
        (SEGV, 2, True, None, True),
        (TIMEOUT, 1, True, None, True),
        (CRASH, 1, False, None, False),  # never retry non-idempotent calls
        (CRASH, 3, True, None, False),  # attempts exhausted
        (PythonError("boom", python_type="ValueError"), 1, True, None, False),
        (CircuitOpenError(circuit="global", retry_after=1.0), 1, True, None, False),
        (ValueError("plain"), 1, True, None, False),
        (WorkerUnavailableError(), 1, True, None, False),
        (WorkerUnavailableError(), 1, True, {"unavailable"}, True),
        (SEGV, 1, True, {"segfault"}, True),
        (CRASH, 1, True, {"segfault"}, False),  # only segfault crashes listed
        (TIMEOUT, 1, True, {"crash"}, False),
        (WorkerCrashedError(exit_kind="killed"), 1, True, {"killed"}, True),
    ],
)
def test_should_retry(
    error: BaseException,
    attempt: int,
    idempotent: bool,
    retryable: set[str] | None,
    expected: bool,
) -> None:
    policy = RetryPolicy() if retryable is None else RetryPolicy(retryable=frozenset(retryable))
    assert policy.should_retry(error, attempt, idempotent) is expected


def test_single_attempt_policy_never_retries() -> None:
    policy = RetryPolicy.none()
    assert policy.max_attempts == 1
    assert policy.should_retry(SEGV, 1, True) is False


def test_policy_is_frozen_and_compares_without_rng() -> None:
    a = RetryPolicy(rng=random.Random(1))
    b = RetryPolicy(rng=random.Random(2))
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.max_attempts = 5  # type: ignore[misc]
    c = a.with_retryable({"timeout"})
    assert c.retryable == frozenset({"timeout"})
    assert c.max_attempts == a.max_attempts
    assert c != a
