"""Functions the telemetry tests run in workers."""

from __future__ import annotations

from snakepit import telemetry


def generate(tokens: int) -> int:
    """Report an inference from inside the worker, as user code would."""
    with telemetry.inference("tiny-llm", batch_size=2) as record:
        record.tokens = tokens
    return tokens


def raise_key_error() -> None:
    raise KeyError("no such feature")
