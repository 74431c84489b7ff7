"""Telemetry of detection and selection (events documented in snakepit.telemetry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import DEVICE_SELECTED, DEVICE_UNAVAILABLE, HARDWARE_DETECTED

__all__ = ["DEVICE_SELECTED", "DEVICE_UNAVAILABLE", "HARDWARE_DETECTED", "emit"]


def emit(
    event: tuple[str, ...], measurements: Mapping[str, float], metadata: Mapping[str, Any]
) -> None:
    """Send one event to the telemetry bus (handlers' failures never reach us)."""
    if enabled(event):
        execute(event, measurements, metadata)
