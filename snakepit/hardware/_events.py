"""Telemetry of detection and selection (events documented in snakepit.telemetry)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEVICE_SELECTED", "DEVICE_UNAVAILABLE", "HARDWARE_DETECTED", "emit"]

HARDWARE_DETECTED = ("snakepit", "hardware", "detected")
DEVICE_SELECTED = ("snakepit", "device", "selected")
DEVICE_UNAVAILABLE = ("snakepit", "device", "unavailable")


def emit(
    event: tuple[str, ...], measurements: Mapping[str, float], metadata: Mapping[str, Any]
) -> None:
    """Send one event to the telemetry bus; never raises.

    The bus is imported here, not at module import, so that telemetry may
    depend on any layer (the pool included) without an import cycle.
    """
    try:
        from snakepit import telemetry

        telemetry.execute(event, measurements, metadata)
    except Exception:  # telemetry must never break detection or selection
        return
