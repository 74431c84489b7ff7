"""Functions for the oom_fallback tests: a GPU worker runs out of memory, a CPU one does not."""

from __future__ import annotations

import os

#: torch's caching allocator's message (the part snakepit reads).
TORCH_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "79.15 GiB of which 1.00 MiB is free."
)


def infer(value: int) -> tuple[str, int]:
    """Runs out of GPU memory on a GPU worker; computes on a CPU worker."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "") != "":
        raise RuntimeError(TORCH_OOM)
    return "cpu", value * 2


def host_oom() -> None:
    """Runs out of host memory, wherever it runs."""
    raise MemoryError("Unable to allocate 8.00 PiB for an array with shape (1 << 50,)")
