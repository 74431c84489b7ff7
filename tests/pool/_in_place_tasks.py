"""Worker functions for test_results_in_place: results fresh and kept, and probes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from snakepit import zero_copy
from snakepit._core import _core
from snakepit.zero_copy import _runtime

#: What the calls below keep: a later write to it must not reach a caller.
KEPT: list[Any] = []


def count(nbytes: int) -> int:
    """float64 items in ``nbytes``."""
    return nbytes // 8


def fresh(nbytes: int) -> np.ndarray[Any, Any]:
    """A result numpy allocates in the call (``arange * 2``)."""
    return np.arange(count(nbytes), dtype=np.float64) * 2


def scaled(nbytes: int, factor: float) -> np.ndarray[Any, Any]:
    """A fresh result: ``arange * factor``."""
    return np.arange(count(nbytes), dtype=np.float64) * factor


def fresh_fortran(nbytes: int) -> np.ndarray[Any, Any]:
    """A fresh result in Fortran order (not C-contiguous)."""
    return np.asfortranarray(np.arange(count(nbytes), dtype=np.float64).reshape(-1, 2) * 2)


def fresh_readonly(nbytes: int) -> np.ndarray[Any, Any]:
    """A fresh result marked read-only."""
    out = fresh(nbytes)
    out.flags.writeable = False
    return out


def fresh_resized(nbytes: int) -> np.ndarray[Any, Any]:
    """A fresh result grown in place (numpy's realloc), then filled."""
    out = np.empty(count(nbytes) // 2, dtype=np.float64)
    out.resize(count(nbytes), refcheck=False)
    out[:] = np.arange(count(nbytes), dtype=np.float64) * 2
    return out


def kept(nbytes: int) -> np.ndarray[Any, Any]:
    """A fresh array that the worker also keeps."""
    out = fresh(nbytes)
    KEPT.append(out)
    return out


def kept_by_a_view(nbytes: int) -> np.ndarray[Any, Any]:
    """A fresh array that a kept view refers to."""
    out = fresh(nbytes)
    KEPT.append(out[:10])
    return out


def kept_in_a_tuple(nbytes: int) -> tuple[Any, ...]:
    """A tuple of fresh arrays that the worker keeps whole."""
    out = (fresh(nbytes), fresh(nbytes))
    KEPT.append(out)
    return out


def overwrite_kept() -> None:
    """Write over everything kept (a caller's copy must not change)."""
    for item in KEPT:
        for array in item if isinstance(item, tuple) else (item,):
            array[...] = -1.0


def containers(nbytes: int) -> tuple[Any, ...]:
    """A tuple, list and dict result: two fresh large arrays in each, one small."""
    return (fresh(nbytes), fresh(nbytes), np.ones(3))


def as_list(nbytes: int) -> list[Any]:
    """A list result of two fresh large arrays and a small one."""
    return [fresh(nbytes), np.ones(3), fresh(nbytes)]


def as_dict(nbytes: int) -> dict[str, Any]:
    """A dict result of two fresh large arrays and a small one."""
    return {"a": fresh(nbytes), "b": np.ones(3), "c": fresh(nbytes)}


def nested(nbytes: int) -> tuple[Any, ...]:
    """Fresh arrays one level down (sent the usual way: copied)."""
    return ((fresh(nbytes),), {"x": [fresh(nbytes)]})


def probe() -> dict[str, Any]:
    """What this worker sent in place, lends now and holds in its arena."""
    stats = zero_copy.arena_stats()
    return {
        "in_place": _runtime.results_in_place(),
        "lent": _core.lent_buffers(),
        "live_blocks": stats.get("live_blocks", 0),
        "pid": os.getpid(),
    }


def fork_and_free(nbytes: int) -> int:
    """Fork a child that frees and allocates lent buffers, then exits: its status."""
    held = fresh(nbytes)
    KEPT.append(held)
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            KEPT.clear()  # frees the parent's lent buffers here: they must be left alone
            del held
            more = [fresh(nbytes) for _ in range(3)]
            if float(more[2][-1]) != 2.0 * (count(nbytes) - 1):
                status = 3
            more.clear()
        except BaseException:
            status = 4
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def segfault() -> None:
    """Crash the worker."""
    import ctypes

    ctypes.string_at(0)
