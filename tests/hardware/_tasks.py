"""Functions the hardware tests run inside pool workers (importable by reference)."""

from __future__ import annotations

import os


def visibility() -> dict[str, str | None]:
    """The GPU visibility variables this worker process sees."""
    names = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
    return {name: os.environ.get(name) for name in names}
