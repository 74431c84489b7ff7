"""OpenBLAS threads: none in the worker template, the user's own in its workers.

numpy's OpenBLAS starts its thread pool when the library loads, and those
threads busy-wait for work for a while. In the template they only burn CPU
while it goes on importing: on this 2-core machine a template that preloads
numpy used 150 ms of CPU and took 169 ms to its hello, against 85 ms and
99 ms with one OpenBLAS thread (median of 10, interleaved).

So where the workers' environment names no thread count, the pool starts
the template with ``OPENBLAS_NUM_THREADS=1`` (:func:`template_env`), and
each worker forked from it gives OpenBLAS back the count a fresh interpreter
would choose (:func:`restore_in_worker`), without starting a thread: as
after any fork, OpenBLAS starts its threads at the first parallel call.
That takes OpenBLAS's own globals, so the pool pins only when the loaded
library has them (numpy's wheels' OpenBLAS does); otherwise it leaves the
template's environment alone. A user's ``OPENBLAS_NUM_THREADS``,
``GOTO_NUM_THREADS`` or ``OMP_NUM_THREADS`` is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["PIN_ENV", "template_env", "restore_in_worker", "openblas_threads"]

#: Set in the template's environment when the pool pinned OpenBLAS there.
PIN_ENV = "SNAKEPIT_TEMPLATE_BLAS_PINNED"
#: What OpenBLAS reads for its thread count, first match wins.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
_GET_CONFIG = ("scipy_openblas_get_config64_", "openblas_get_config64_", "openblas_get_config")
_GET_THREADS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)
#: Whether this process is a template the pool pinned (read once, at import:
#: a forked worker's environment no longer says so).
_PINNED = os.environ.get(PIN_ENV) == "1"


def _loaded_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS library this process has loaded (numpy's), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        if path.startswith("/") and ".so" in os.path.basename(path):
            try:
                return ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            except OSError:
                continue
    return None


def _function(lib: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    for name in names:
        try:
            return getattr(lib, name)
        except AttributeError:
            continue
    return None


def _globals(lib: ctypes.CDLL) -> tuple[ctypes.c_int, ctypes.c_int] | None:
    try:
        return ctypes.c_int.in_dll(lib, "blas_cpu_number"), ctypes.c_int.in_dll(
            lib, "blas_num_threads"
        )
    except ValueError:
        return None


def _max_threads(lib: ctypes.CDLL) -> int | None:
    get_config = _function(lib, _GET_CONFIG)
    if get_config is None:
        return None
    get_config.restype = ctypes.c_char_p
    match = re.search(rb"MAX_THREADS=(\d+)", get_config() or b"")
    return int(match.group(1)) if match else None


def openblas_threads() -> int | None:
    """OpenBLAS's thread count in this process, or None when it is not loaded."""
    lib = _loaded_openblas()
    get = _function(lib, _GET_THREADS) if lib is not None else None
    if get is None:
        return None
    get.restype = ctypes.c_int
    return int(get())


def template_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a template whose workers get ``env``: OpenBLAS pinned where safe.

    Pinned only when ``env`` names no thread count and the OpenBLAS this
    process loaded (the one the template will load) has what
    :func:`restore_in_worker` needs.
    """
    out = dict(env)
    if any(name in env for name in THREAD_VARS):
        return out
    lib = _loaded_openblas()
    if lib is None or _globals(lib) is None or _max_threads(lib) is None:
        return out
    out["OPENBLAS_NUM_THREADS"] = "1"
    out[PIN_ENV] = "1"
    return out


def _fresh_count(max_threads: int) -> int:
    """What OpenBLAS would choose in a fresh interpreter with this environment."""
    for name in THREAD_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                wanted = int(value)
            except ValueError:
                continue
            if wanted > 0:
                return min(wanted, max_threads)
    count = os.cpu_count() or 1
    with contextlib.suppress(AttributeError, OSError):
        count = min(count, len(os.sched_getaffinity(0)))
    return max(1, min(count, max_threads))


#: OpenBLAS's thread globals and its MAX_THREADS, found once by the template
#: (:func:`find_in_template`): each worker then only writes two ints.
_Found = tuple[ctypes.c_int, ctypes.c_int, int]
_found: _Found | None = None


def _find() -> _Found | None:
    lib = _loaded_openblas()
    found = _globals(lib) if lib is not None else None
    max_threads = _max_threads(lib) if lib is not None else None
    if found is None or max_threads is None:
        return None  # numpy was not preloaded: the worker loads it with its own environment
    return (*found, max_threads)


def find_in_template() -> None:
    """In a pinned template, after its preloads: find what workers restore.

    Looking it up reads ``/proc/self/maps`` and asks OpenBLAS for its
    configuration, 1-4 ms that each forked worker would otherwise spend
    before it is ready. The ctypes objects stay valid in a fork (same
    addresses).
    """
    global _found
    if _PINNED:
        _found = _find()


def restore_in_worker() -> None:
    """In a worker forked from a pinned template: OpenBLAS's count as a fresh one would have it.

    Call after the worker's environment is in place. Starts no thread.
    """
    if not _PINNED:
        return
    found = _found if _found is not None else _find()
    if found is None:
        return
    cpu_number, num_threads, max_threads = found
    count = _fresh_count(max_threads)
    cpu_number.value = count
    num_threads.value = count
