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
from snakepit.telemetry._events import ALL_EVENTS, CATALOGUE, EventSpec
from snakepit.telemetry._gpu import GpuMemoryProfiler, GpuMemorySample
from snakepit.telemetry._logging import attach_logging, detach_logging
from snakepit.telemetry._metrics import PrometheusMetrics
from snakepit.telemetry._ml import MLRecord, inference, tensor_op, train_step
from snakepit.telemetry._otel import OpenTelemetryBridge

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
    "span",
    "tensor_op",
    "train_step",
]
