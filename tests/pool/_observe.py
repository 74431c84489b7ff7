"""Telemetry handlers that collect one tagged breaker's or monitor's events.

Breakers and health monitors emit their own events, tagged with a pool name;
each test object gets a unique tag so tests never see each other's events.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from snakepit import telemetry
from snakepit.pool._circuit import CircuitState
from snakepit.pool._health import HealthAlert
from snakepit.telemetry._events import CIRCUIT_CLOSE, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, HEALTH_ALERT

_STATE_OF = {
    CIRCUIT_OPEN: CircuitState.OPEN,
    CIRCUIT_HALF_OPEN: CircuitState.HALF_OPEN,
    CIRCUIT_CLOSE: CircuitState.CLOSED,
}
_tags = itertools.count(1)
_lock = threading.Lock()
_transitions: dict[str, list[tuple[str, CircuitState, CircuitState]]] = {}
_alerts: dict[str, list[HealthAlert]] = {}


def new_tag() -> tuple[str, list[tuple[str, CircuitState, CircuitState]], list[HealthAlert]]:
    """A pool tag and the lists its transitions and alerts will be appended to."""
    tag = f"observed-{next(_tags)}"
    with _lock:
        _transitions[tag] = []
        _alerts[tag] = []
        return tag, _transitions[tag], _alerts[tag]


def _handle(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
    tag = metadata.get("pool")
    with _lock:
        if event == HEALTH_ALERT:
            sink = _alerts.get(tag)
            if sink is not None:
                sink.append(metadata["health_alert"])
            return
        transitions = _transitions.get(tag)
        if transitions is not None:
            previous = CircuitState(metadata["previous"])
            transitions.append((metadata["circuit"], previous, _STATE_OF[event]))


@contextmanager
def observing() -> Iterator[None]:
    """Attach the collecting handler for the duration of the block."""
    handler_id = f"tests-observe-{id(_handle)}"
    telemetry.attach_many(
        handler_id, [CIRCUIT_OPEN, CIRCUIT_HALF_OPEN, CIRCUIT_CLOSE, HEALTH_ALERT], _handle
    )
    try:
        yield
    finally:
        telemetry.detach(handler_id)


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False
