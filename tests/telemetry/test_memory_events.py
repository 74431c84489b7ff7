"""Shared-memory allocate/release events, and why release is deferred."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.telemetry import _bus

ALLOCATE = ("snakepit", "memory", "allocate")
RELEASE = ("snakepit", "memory", "release")


class LockingCollector:
    """A handler guarding its state with a plain (non-reentrant) lock, as most do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, float]] = []

    def __call__(self, event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        with self.lock:
            self.seen.append((event[-1], measurements["bytes"]))
            # Allocating here may run the garbage collector, and with it the
            # finalizer of an array that died in a reference cycle.
            gc.collect()


@pytest.fixture
def collector() -> Iterator[LockingCollector]:
    handler = LockingCollector()
    # Blocks that earlier tests left in reference cycles die now, not while
    # this test counts its own.
    gc.collect()
    _bus.flush_deferred()
    telemetry.attach_many("test-memory", [ALLOCATE, RELEASE], handler)
    try:
        yield handler
    finally:
        telemetry.detach("test-memory")


def test_allocation_and_release_are_reported(collector: LockingCollector) -> None:
    array = snakepit.empty((256,), "float64")
    view = array[10:]
    del array
    assert _bus.flush_deferred()
    assert collector.seen == [("allocate", 2048)]
    del view
    gc.collect()
    assert _bus.flush_deferred()
    assert collector.seen == [("allocate", 2048), ("release", 2048)]


def test_release_inside_a_locked_handler_does_not_deadlock(collector: LockingCollector) -> None:
    # An array in a reference cycle dies only when the collector runs, which
    # the handler itself triggers while holding its lock. Emitting the release
    # event right there would deadlock on that lock.
    cycle: list[Any] = [snakepit.empty((64,), "uint8")]
    cycle.append(cycle)
    del cycle
    snakepit.empty((32,), "uint8")  # handler runs gc.collect() under its lock
    assert _bus.flush_deferred()
    assert ("release", 64) in collector.seen


def test_only_a_handler_of_memory_events_makes_allocations_report() -> None:
    seen: list[Any] = []
    snakepit.empty((8,), "float64")  # the arena made
    with snakepit.Pool(1):  # its failure logging listens, not to memory events
        assert _bus.listening
        telemetry.attach(
            "test-memory-other", ("snakepit", "call", "stop"), lambda *event: seen.append(event[0])
        )
        try:
            snakepit.empty((8,), "float64")
            assert _bus.flush_deferred()
            assert seen == []
            telemetry.attach("test-memory-one", ALLOCATE, lambda *event: seen.append(event[0]))
            try:
                snakepit.empty((8,), "float64")
            finally:
                telemetry.detach("test-memory-one")
        finally:
            telemetry.detach("test-memory-other")
    assert seen == [ALLOCATE]
