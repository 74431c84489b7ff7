"""This process's arena: configuration, allocation of shared arrays, statistics.

Arrays made here (:func:`empty`, :func:`zeros`, :func:`share`) live in
blocks of this process's :class:`snakepit._core.Arena`; a block returns to
the arena when its last view dies and every other process has dropped its
references.
"""

from __future__ import annotations

import atexit
import errno
import math
import operator
import os
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, SupportsIndex, cast

if TYPE_CHECKING:
    import numpy as np

from snakepit import _core
from snakepit.errors import SharedMemoryError, SnakepitError
from snakepit.telemetry import _bus
from snakepit.telemetry._events import MEMORY_ALLOCATE, MEMORY_RELEASE

from . import _gc
from ._dtypes import dtype_name, resolve_dtype
from ._errors import core_error, core_errors
from ._mapping import SHM_DIR, sendable_buffer, shared_buffer

DEFAULT_THRESHOLD_BYTES = 1 << 20

ShapeLike = SupportsIndex | Sequence[SupportsIndex]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SharedMemoryError(f"{name}={raw!r} is not an integer number of bytes") from None
    if value < 0:
        raise SharedMemoryError(f"{name}={raw!r} must not be negative")
    return value


class _State:
    """The arena and its settings, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.arena: _core.Arena | None = None
        self.arena_pid = 0
        self.cap_bytes = _env_int("SNAKEPIT_SHM_CAP_BYTES", 0)
        self.threshold_bytes = _env_int("SNAKEPIT_THRESHOLD_BYTES", DEFAULT_THRESHOLD_BYTES)
        # Arenas inherited through fork belong to the parent: never unlink them.
        self.orphans: list[_core.Arena] = []
        #: numpy allocates large buffers in the arena (install_warm_buffers).
        self.lend = False
        #: Ids of the arrays share_array may send from where they are (a
        #: worker's fresh results: lend_results), and how many it did.
        self.movable: frozenset[int] = frozenset()
        self.moved = 0


_state = _State()


def _after_fork_in_child() -> None:
    if _state.arena is not None:
        _state.orphans.append(_state.arena)
    _state.arena = None
    _state.lend = False  # numpy's allocator lends only in the process that lent
    _state.lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_at_exit() -> None:
    """Leave nothing in /dev/shm, yet keep the memory mapped: arrays may still
    be touched by code that runs after us during interpreter shutdown."""
    arena = _state.arena
    if arena is not None and _state.arena_pid == os.getpid():
        _state.arena = None
        _state.orphans.append(arena)
        arena.unlink_all()


def reset_for_tests() -> None:
    """Release this process's shared memory as its exit would, and forget its
    mappings (leak checks; see :mod:`snakepit.testing`)."""
    _close_at_exit()
    _gc.forget_mappings()


def _cache_bytes() -> int:
    """How much freed large-block memory the arena keeps for reuse.

    A quarter of /dev/shm, between 256 MiB and 8 GiB: enough to reuse a
    1 GiB tensor's region without a fresh shm_open and page faults, small
    enough not to starve other users of /dev/shm.
    """
    try:
        total = _core.shm_space(SHM_DIR)[0]
    except _core.CoreError:
        return 0  # the core's default
    return max(256 << 20, min(8 << 30, total // 4))


#: numpy arrays of this size or more come from warm buffers in workers.
WARM_MIN_BYTES = 1 << 20


def _warm_cache_bytes() -> int:
    """Freed large numpy buffers a worker keeps mapped: a sixteenth of the
    machine's memory, between 256 MiB and 4 GiB (env
    ``SNAKEPIT_WARM_CACHE_BYTES``, 0 to keep none and leave numpy's
    allocator alone)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        total = 0
    default = max(256 << 20, min(4 << 30, total // 16))
    return _env_int("SNAKEPIT_WARM_CACHE_BYTES", default)


def install_warm_buffers(*, lend: bool = False) -> bool:
    """Make numpy take arrays of 1 MiB or more from warm buffers in this
    thread (a worker's calls): freed ones stay mapped and serve the next
    call's, so a result computed per call (``arr * 1``) does not fault in
    fresh pages every time, which costs more than copying it.

    With ``lend`` (a worker, unless ``SNAKEPIT_RESULTS_IN_PLACE=0``), arrays
    from the copy threshold up come from this process's arena once it
    exists, so that a fresh result travels from where it was computed
    (:func:`lend_results`). Returns whether numpy's allocator was changed here.
    """
    cache = _warm_cache_bytes()
    if cache == 0:
        return False
    with core_errors("install warm buffers"):
        changed = bool(_core.install_warm_allocator(WARM_MIN_BYTES, cache))
    if lend and _env_int("SNAKEPIT_RESULTS_IN_PLACE", 1):
        with _state.lock:
            _state.lend = True
            if _state.arena is not None:
                _lend(_state.arena)
    return changed


def _lend(arena: _core.Arena) -> None:
    with core_errors("lend the arena to numpy"):
        _core.lend_arena(arena, max(_state.threshold_bytes, WARM_MIN_BYTES))


def lend_results(ids: frozenset[int]) -> None:
    """Let :func:`share_array` send the arrays whose ids are ``ids`` from
    where they are, when numpy allocated them in the arena, instead of
    copying them (until the next call; an empty set ends it).

    The caller vouches that nothing else holds them: a worker's fresh results
    that only the reply refers to (no later write can reach the receiver).
    """
    _state.movable = ids


def results_in_place() -> int:
    """How many arrays :func:`share_array` sent from where they were."""
    return _state.moved


def _get_arena() -> _core.Arena:
    arena = _state.arena
    if arena is not None:
        return arena
    with _state.lock:
        if _state.arena is None:
            # A new owner of shared memory is the moment to reclaim what dead
            # owners left behind (docs/zero-copy.md: the next supervisor unlinks them).
            _gc.collect_garbage()
            _state.arena = _core.Arena(
                cap_bytes=_state.cap_bytes, cache_bytes=_cache_bytes(), prefault=True
            )
            _state.arena_pid = os.getpid()
            if _state.lend:
                _lend(_state.arena)
        return _state.arena


def configure(*, threshold_bytes: int | None = None, cap_bytes: int | None = None) -> None:
    """Set the copy threshold and/or the cap on this process's shared memory.

    ``threshold_bytes``: buffers at or above this size travel through shared
    memory (default 1 MiB, env ``SNAKEPIT_THRESHOLD_BYTES``). ``cap_bytes``:
    most bytes of shared memory the arena may map at once, 0 for no cap (env
    ``SNAKEPIT_SHM_CAP_BYTES``).
    """
    with _state.lock:
        if threshold_bytes is not None:
            if threshold_bytes < 0:
                raise ValueError("threshold_bytes must be >= 0")
            _state.threshold_bytes = threshold_bytes
            if _state.lend and _state.arena is not None:
                _lend(_state.arena)
        if cap_bytes is not None:
            if cap_bytes < 0:
                raise ValueError("cap_bytes must be >= 0")
            _state.cap_bytes = cap_bytes
            if _state.arena is not None:
                _state.arena.set_cap(cap_bytes)


def threshold_bytes() -> int:
    """Buffers at or above this many bytes go through shared memory."""
    return _state.threshold_bytes


def cap_bytes() -> int:
    """The configured cap on mapped shared memory (0 = none)."""
    return _state.cap_bytes


def arena_stats() -> dict[str, int]:
    """Counters of this process's arena (zeros before first use)."""
    arena = _state.arena
    if arena is None or arena.closed:
        return {}
    return arena.stats()


def reclaim() -> int:
    """Make blocks that every process has released reusable now; returns how many.

    The arena also does this by itself before it maps a new region.
    """
    arena = _state.arena
    if arena is None or arena.closed:
        return 0
    return arena.reclaim()


def trim() -> None:
    """Give back (unmap and unlink) freed large regions kept for reuse."""
    arena = _state.arena
    if arena is not None and not arena.closed:
        arena.trim()


def shm_space() -> tuple[int, int]:
    """(total, available) bytes of /dev/shm."""
    with core_errors("statvfs /dev/shm"):
        return _core.shm_space(SHM_DIR)


def _allocation_error(exc: _core.CoreError, nbytes: int) -> SnakepitError:
    available = None
    if exc.status == _core.Status.CAP:  # room left under the configured cap
        available = max(0, _state.cap_bytes - arena_stats().get("mapped_bytes", 0))
    return core_error(exc, "allocate shared memory", requested=nbytes, available=available)


def _normalize_shape(shape: ShapeLike) -> tuple[int, ...]:
    # Exact type tests and builtins first (no generators, exceptions or ABC
    # checks on the common forms): this is the allocation hot path.
    # (typing.cast is a call too: none on the way of a tuple.)
    kind = type(shape)
    result: tuple[int, ...]
    if kind is tuple:
        result = tuple(map(operator.index, shape))  # type: ignore[arg-type]
    elif kind is int:
        result = (cast(int, shape),)
    elif kind is list or isinstance(shape, Sequence):
        result = tuple(map(operator.index, cast(Sequence[SupportsIndex], shape)))
    else:
        result = (operator.index(shape),)
    for dim in result:
        if dim < 0:
            raise ValueError(f"negative dimension in shape {result}")
    return result


#: id(dtype argument) -> (that argument, its resolved dtype); holding the
#: argument keeps its id from being reused while it is cached.
_resolved: dict[int, tuple[object, np.dtype[Any]]] = {}
_RESOLVED_MAX = 256


def _resolve_cached(dtype: object) -> np.dtype[Any]:
    # resolve_dtype reads numpy's dtype.name (Python code): most of the
    # cost of a small share(). Identity, not equality: dtypes that compare
    # equal may differ in metadata (bfloat16 is V2 with a tag).
    entry = _resolved.get(id(dtype))
    if entry is not None and entry[0] is dtype:
        return entry[1]
    resolved = resolve_dtype(dtype)
    if len(_resolved) >= _RESOLVED_MAX:
        _resolved.clear()
    _resolved[id(dtype)] = (dtype, resolved)
    return resolved


def empty(shape: ShapeLike, dtype: Any = "float32") -> np.ndarray[Any, Any]:
    """An uninitialised C-contiguous array allocated in shared memory."""
    if type(shape) is not tuple:
        shape = _normalize_shape(shape)
    # The common allocation (a dtype seen before, the arena made, nobody
    # listening to allocations) in this frame: two more calls cost it a
    # third of its time.
    entry = _resolved.get(id(dtype))
    resolved = entry[1] if entry is not None and entry[0] is dtype else _resolve_cached(dtype)
    arena = _state.arena
    handled = _bus.handled
    if arena is None or MEMORY_ALLOCATE in handled or MEMORY_RELEASE in handled:
        return _allocate(shape, resolved)
    try:
        # A tuple goes to the core as it is: it checks each dimension as it reads it.
        array: np.ndarray[Any, Any] = arena.alloc_array(shape, resolved)
    except (_core.CoreError, TypeError, ValueError, OverflowError) as exc:
        _allocation_failed(exc, shape, resolved)
    return array


def _allocate(dims: tuple[SupportsIndex, ...], resolved: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """:func:`empty` for a resolved dtype."""
    try:
        array: np.ndarray[Any, Any] = (_state.arena or _get_arena()).alloc_array(dims, resolved)
    except (_core.CoreError, TypeError, ValueError, OverflowError) as exc:
        _allocation_failed(exc, dims, resolved)
    handled = _bus.handled  # read once: the hot path
    if MEMORY_ALLOCATE in handled or MEMORY_RELEASE in handled:
        _report_allocation(array, array.nbytes)
    return array


def _allocation_failed(
    exc: BaseException, dims: tuple[SupportsIndex, ...], resolved: np.dtype[Any]
) -> NoReturn:
    """Raise what a failed allocation of ``dims`` raises for the core's ``exc``."""
    if isinstance(exc, _core.CoreError):
        nbytes = math.prod(map(operator.index, dims)) * resolved.itemsize
        raise _allocation_error(exc, nbytes) from None
    checked = _normalize_shape(dims)  # names a negative or non-integer dimension
    if not isinstance(exc, OverflowError):
        raise exc
    nbytes = math.prod(checked) * resolved.itemsize
    if nbytes == 0:  # numpy cannot hold the dimension, even of an empty array
        raise ValueError(f"a dimension of shape {checked} does not fit in 64 bits") from None
    too_large = _core.CoreError(_core.Status.NOSPACE, errno.ENOSPC, "allocate")
    raise _allocation_error(too_large, nbytes) from None


def _report_allocation(array: np.ndarray[Any, Any], nbytes: int) -> None:
    if _bus.has_handlers(MEMORY_ALLOCATE):
        _bus.execute(
            MEMORY_ALLOCATE,
            {"bytes": nbytes},
            {"dtype": dtype_name(array.dtype), "shape": array.shape},
        )
    if _bus.has_handlers(MEMORY_RELEASE):
        buffer = shared_buffer(array)
        if buffer is not None:
            # The block goes back to the arena when its buffer (every view) dies.
            # Reported from a thread, not from inside garbage collection,
            # where a handler that holds a lock would deadlock.
            _bus.start_deferred()
            weakref.finalize(buffer, _bus.execute_later, MEMORY_RELEASE, {"bytes": nbytes}, {})


def zeros(shape: ShapeLike, dtype: Any = "float32") -> np.ndarray[Any, Any]:
    """A zero-filled array in shared memory (blocks are reused, so we clear)."""
    import numpy as np

    array = empty(shape, dtype)
    array.reshape(-1).view(np.uint8).fill(0)
    return array


def is_shared_array(array: object) -> bool:
    """Whether ``array`` is a numpy view of snakepit shared memory."""
    import numpy as np

    return isinstance(array, np.ndarray) and shared_buffer(array) is not None


def share_array(array: Any) -> np.ndarray[Any, Any]:
    """Copy ``array`` once into shared memory; already shared arrays are returned.

    An array in a region that is gone by name (its owner, a worker, died) is
    copied too: it is valid here, but no other process could open it.
    """
    import numpy as np

    source = np.asarray(array)
    if sendable_buffer(source) is not None:
        return source
    if _state.movable and id(source) in _state.movable:
        moved = _in_place(source)
        if moved is not None:
            return moved
    # A numpy shape is a tuple of non-negative ints already.
    out = _allocate(source.shape, _resolve_cached(source.dtype))
    if out.dtype == source.dtype and source.flags.c_contiguous:
        # The core's copy streams large arrays into the block (0.65-0.8x the
        # time of np.copyto's memcpy from 16 MiB on, any relative alignment).
        _core.copy_into(out, source)
    else:
        np.copyto(out, source, casting="no")
    return out


def _in_place(source: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """``source`` as a shared array over the arena block numpy put it in, or None."""
    arena = _state.arena
    if arena is None or arena.closed or not source.flags.c_contiguous or source.dtype.hasobject:
        return None
    try:
        moved: np.ndarray[Any, Any] | None = arena.adopt_array(source)
    except _core.CoreError:
        return None  # the copy is always right
    if moved is not None:
        _state.moved += 1
    return moved


__all__ = [
    "DEFAULT_THRESHOLD_BYTES",
    "arena_stats",
    "cap_bytes",
    "configure",
    "empty",
    "install_warm_buffers",
    "is_shared_array",
    "lend_results",
    "reclaim",
    "results_in_place",
    "reset_for_tests",
    "share_array",
    "shm_space",
    "threshold_bytes",
    "trim",
    "zeros",
]
