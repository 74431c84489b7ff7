"""snakepit's telemetry: an event bus, spans and handlers (see docs/telemetry.md).

Events are tuples of strings such as ``("snakepit", "call", "stop")`` emitted
with measurements (numbers) and metadata (anything). Attach a function to see
them::

    from snakepit import telemetry

    def on_call(event, measurements, metadata, config):
        print(metadata["function"], measurements["duration"])

    telemetry.attach("print-calls", ("snakepit", "call", "stop"), on_call)

:data:`CATALOGUE` documents every event snakepit emits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snakepit._util import lazy_names
from snakepit.telemetry._bus import (
    Event,
    Handler,
    HandlerInfo,
    Measurements,
    Metadata,
    attach,
    attach_many,
    detach,
    enabled,
    execute,
    list_handlers,
    span,
)

if TYPE_CHECKING:
    from snakepit.telemetry._events import ALL_EVENTS, CATALOGUE, EventSpec
    from snakepit.telemetry._failures import log_failures
    from snakepit.telemetry._gpu import GpuMemoryProfiler, GpuMemorySample
    from snakepit.telemetry._logging import attach_logging, detach_logging
    from snakepit.telemetry._metrics import PrometheusMetrics
    from snakepit.telemetry._ml import MLRecord, inference, tensor_op, train_step
    from snakepit.telemetry._otel import OpenTelemetryBridge

#: Names that load on first use (PEP 562): a worker, which needs only the
#: bus, does not pay for the handlers' imports when it starts.
_LAZY: dict[str, str] = {
    "ALL_EVENTS": "snakepit.telemetry._events",
    "CATALOGUE": "snakepit.telemetry._events",
    "EventSpec": "snakepit.telemetry._events",
    "GpuMemoryProfiler": "snakepit.telemetry._gpu",
    "GpuMemorySample": "snakepit.telemetry._gpu",
    "attach_logging": "snakepit.telemetry._logging",
    "detach_logging": "snakepit.telemetry._logging",
    "log_failures": "snakepit.telemetry._failures",
    "PrometheusMetrics": "snakepit.telemetry._metrics",
    "MLRecord": "snakepit.telemetry._ml",
    "inference": "snakepit.telemetry._ml",
    "tensor_op": "snakepit.telemetry._ml",
    "train_step": "snakepit.telemetry._ml",
    "OpenTelemetryBridge": "snakepit.telemetry._otel",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "ALL_EVENTS",
    "CATALOGUE",
    "Event",
    "EventSpec",
    "GpuMemoryProfiler",
    "GpuMemorySample",
    "Handler",
    "HandlerInfo",
    "MLRecord",
    "Measurements",
    "Metadata",
    "OpenTelemetryBridge",
    "PrometheusMetrics",
    "attach",
    "attach_logging",
    "attach_many",
    "detach",
    "detach_logging",
    "enabled",
    "execute",
    "inference",
    "list_handlers",
    "log_failures",
    "span",
    "tensor_op",
    "train_step",
]
