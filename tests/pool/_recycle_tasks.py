"""Functions the recycling tests run in workers (importable by reference)."""

from __future__ import annotations

import os
import time

import numpy as np

_kept: list[bytearray] = []


def pid() -> int:
    return os.getpid()


def cwd() -> str:
    return os.getcwd()


def private_resident() -> int:
    """This process's private resident bytes, as the worker's limit check counts them."""
    with open("/proc/self/statm") as statm:
        fields = [int(field) for field in statm.read().split()]
    return (fields[1] - fields[2]) * os.sysconf("SC_PAGE_SIZE")


def leak(mib: int) -> int:
    """Keep ``mib`` MiB (touched) for the life of the worker; return the pid."""
    _kept.append(bytearray(mib << 20))
    return os.getpid()


def allocate(nbytes: int) -> float:
    """One large numpy allocation (fails with MemoryError past the limit)."""
    return float(np.ones(nbytes // 8).sum())


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
