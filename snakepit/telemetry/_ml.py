"""Helpers for user code to report ML work: tensor ops, inference, train steps.

Each is a context manager that times its block and emits one event when the
block ends; values known only at the end (tokens generated, the loss) are set
on the object it yields. In a worker the event is forwarded to the
supervisor's bus with the worker's id.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from snakepit.telemetry._bus import Event, enabled, execute
from snakepit.telemetry._events import ML_INFERENCE, ML_TENSOR_OP, ML_TRAIN_STEP


class MLRecord:
    """Timer for one block; set ``tokens``, ``loss``, ``bytes`` ... before it ends."""

    __slots__ = ("_event", "_start", "batch_size", "bytes", "loss", "metadata", "tokens")

    def __init__(self, event: Event, metadata: dict[str, Any], **measurements: Any) -> None:
        self._event = event
        self.metadata = metadata
        self.batch_size: int | None = measurements.get("batch_size")
        self.tokens: int | None = measurements.get("tokens")
        self.loss: float | None = measurements.get("loss")
        self.bytes: int | None = measurements.get("bytes")
        self._start = 0.0

    def __enter__(self) -> MLRecord:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._start
        if exc is not None or not enabled(self._event):
            return  # a failed step is reported by the call's exception event
        measurements: dict[str, float] = {"duration": duration}
        for name in ("batch_size", "tokens", "loss", "bytes"):
            value = getattr(self, name)
            if value is not None:
                measurements[name] = float(value)
        if self.tokens is not None and duration > 0:
            measurements["tokens_per_second"] = self.tokens / duration
        execute(self._event, measurements, self.metadata)


def tensor_op(
    op: str,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | None = None,
    nbytes: int | None = None,
) -> MLRecord:
    """Time a tensor operation: ``with telemetry.tensor_op("matmul", shape=x.shape): ...``."""
    metadata: dict[str, Any] = {"op": op, "shape": shape, "dtype": dtype}
    return MLRecord(ML_TENSOR_OP, metadata, bytes=nbytes)


def inference(model: str, *, batch_size: int | None = None, tokens: int | None = None) -> MLRecord:
    """Time an inference; set ``.tokens`` on the record to get tokens per second."""
    return MLRecord(ML_INFERENCE, {"model": model}, batch_size=batch_size, tokens=tokens)


def train_step(step: int, *, model: str | None = None, batch_size: int | None = None) -> MLRecord:
    """Time a training step; set ``.loss`` on the record to report it."""
    return MLRecord(ML_TRAIN_STEP, {"step": step, "model": model}, batch_size=batch_size)
