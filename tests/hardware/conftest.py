"""Fixtures of the hardware tests: telemetry capture, a clean detection cache."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from snakepit import hardware, telemetry

EVENTS = [
    ("snakepit", "hardware", "detected"),
    ("snakepit", "device", "selected"),
    ("snakepit", "device", "unavailable"),
]
_ids = itertools.count()

Seen = list[tuple[tuple[str, ...], dict[str, float], dict[str, Any]]]


@pytest.fixture
def events() -> Iterator[Seen]:
    """Every hardware/device telemetry event emitted during the test."""
    seen: Seen = []

    def record(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append((tuple(event), dict(measurements), dict(metadata)))

    handler_id = f"hardware-test-{next(_ids)}"
    telemetry.attach(handler_id, EVENTS, record)
    yield seen
    telemetry.detach(handler_id)


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Start and end with no cached detection."""
    hardware.clear_cache()
    yield
    hardware.clear_cache()
