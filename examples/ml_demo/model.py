"""The "model" the demo's workers run: a two-layer MLP in numpy.

Kept in its own module so workers import it by name (the demo's directory is
on the caller's sys.path, which the pool hands to its workers).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from snakepit import telemetry

Array = np.ndarray[Any, Any]


def infer(weights: Array, hidden: Array, batch: Array) -> Array:
    """Forward pass; reports an inference event (forwarded to the supervisor)."""
    with telemetry.inference("mlp-demo", batch_size=len(batch)) as record:
        centered = np.array(batch)  # our copy: the caller's batch is shared, not ours
        centered -= centered.mean(axis=0)
        activations = np.maximum(centered @ weights, 0.0)
        logits = activations @ hidden
        record.tokens = int(logits.shape[0] * logits.shape[1])
    return logits


def crash_native_code() -> None:
    """What a buggy C extension does: read address 0 (SIGSEGV)."""
    ctypes.string_at(0)
