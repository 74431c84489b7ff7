"""Process-wide shared-memory state: the arena, attached mappings, lifetimes."""

from __future__ import annotations

import atexit
import contextlib
import errno
import math
import operator
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Literal, SupportsIndex, cast
from weakref import WeakValueDictionary

import numpy as np
import psutil

from snakepit import _core
from snakepit.errors import InvalidDescriptorError, SharedMemoryError, SnakepitError
from snakepit.telemetry import _bus
from snakepit.telemetry._events import MEMORY_ALLOCATE, MEMORY_RELEASE

from ._dtypes import dtype_name, numpy_dtype, resolve_dtype
from ._errors import core_error, core_errors
from ._ledger import LeaseLedger
from ._ref import TensorRef

SHM_DIR = "/dev/shm"
NAME_PREFIX = "snakepit-"
DEFAULT_THRESHOLD_BYTES = 1 << 20

ShapeLike = SupportsIndex | Sequence[SupportsIndex]
RefMode = Literal["acquire", "borrow", "adopt"]


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
    """Everything this process knows about shared memory, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.arena: _core.Arena | None = None
        self.arena_pid = 0
        self.cap_bytes = _env_int("SNAKEPIT_SHM_CAP_BYTES", 0)
        self.threshold_bytes = _env_int("SNAKEPIT_THRESHOLD_BYTES", DEFAULT_THRESHOLD_BYTES)
        self.mappings: dict[str, _core.Region] = {}
        # Lets TensorRef.release() find what this process holds for a block.
        self.holders: WeakValueDictionary[tuple[str, int], _core.SharedBuffer] = (
            WeakValueDictionary()
        )
        # Arenas inherited through fork belong to the parent: never unlink them.
        self.orphans: list[_core.Arena] = []
        # Regions this process unlinked for their dead owner while it still
        # maps them: arrays there stay valid here but cannot be opened by
        # name elsewhere, so they are copied when sent on.
        self.unlinked: set[str] = set()
        # In a worker: where references on the supervisor's blocks are noted.
        self.ledger: LeaseLedger | None = None


_state = _State()


def _after_fork_in_child() -> None:
    if _state.arena is not None:
        _state.orphans.append(_state.arena)
    _state.arena = None
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


def _get_arena() -> _core.Arena:
    arena = _state.arena
    if arena is not None:
        return arena
    with _state.lock:
        if _state.arena is None:
            # A new owner of shared memory is the moment to reclaim what dead
            # owners left behind (SPEC §1.1, "the next supervisor ... unlinks").
            collect_garbage()
            _state.arena = _core.Arena(
                cap_bytes=_state.cap_bytes, cache_bytes=_cache_bytes(), prefault=True
            )
            _state.arena_pid = os.getpid()
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


def _allocation_error(exc: _core.CoreError, nbytes: int) -> SnakepitError:
    available = None
    if exc.status == _core.Status.CAP:  # room left under the configured cap
        available = max(0, _state.cap_bytes - arena_stats().get("mapped_bytes", 0))
    return core_error(exc, "allocate shared memory", requested=nbytes, available=available)


def _normalize_shape(shape: ShapeLike) -> tuple[int, ...]:
    # Exact type tests and builtins first (no generators, exceptions or ABC
    # checks on the common forms): this is the allocation hot path.
    kind = type(shape)
    result: tuple[int, ...]
    if kind is int:
        result = (cast(int, shape),)
    elif kind is tuple or kind is list or isinstance(shape, Sequence):
        result = tuple(map(operator.index, cast(Sequence[SupportsIndex], shape)))
    else:
        result = (operator.index(shape),)
    if result and min(result) < 0:
        raise ValueError(f"negative dimension in shape {result}")
    return result


def empty(shape: ShapeLike, dtype: Any = "float32") -> np.ndarray[Any, Any]:
    """An uninitialised C-contiguous array allocated in shared memory."""
    dims = _normalize_shape(shape)
    resolved = resolve_dtype(dtype)
    nbytes = math.prod(dims) * resolved.itemsize
    if nbytes > _core.MAX_REGION_SIZE:
        # Beyond any region the core can map (and beyond 64-bit sizes).
        raise _allocation_error(
            _core.CoreError(_core.Status.NOSPACE, errno.ENOSPC, "allocate"), nbytes
        )
    try:
        allocation = _get_arena().alloc(nbytes)
    except _core.CoreError as exc:
        raise _allocation_error(exc, nbytes) from None
    array: np.ndarray[Any, Any] = _core.array_over(allocation.buffer(), dims, resolved)
    if _bus._table:  # one dict truth test while nobody listens: this is the hot path
        _report_allocation(array, nbytes)
    return array


def _report_allocation(array: np.ndarray[Any, Any], nbytes: int) -> None:
    if _bus.has_handlers(MEMORY_ALLOCATE):
        _bus.execute(
            MEMORY_ALLOCATE,
            {"bytes": nbytes},
            {"dtype": dtype_name(array.dtype), "shape": array.shape},
        )
    if _bus.has_handlers(MEMORY_RELEASE):
        buffer = _shared_buffer(array)
        if buffer is not None:
            # The block goes back to the arena when its buffer (every view) dies.
            # Reported from a thread, not from inside garbage collection,
            # where a handler that holds a lock would deadlock.
            _bus.start_deferred()
            weakref.finalize(buffer, _bus.execute_later, MEMORY_RELEASE, {"bytes": nbytes}, {})


def zeros(shape: ShapeLike, dtype: Any = "float32") -> np.ndarray[Any, Any]:
    """A zero-filled array in shared memory (blocks are reused, so we clear)."""
    array = empty(shape, dtype)
    array.reshape(-1).view(np.uint8).fill(0)
    return array


def _shared_buffer(array: object) -> _core.SharedBuffer | None:
    obj: object = array
    while obj is not None:
        if isinstance(obj, _core.SharedBuffer):
            return obj
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return None
    return None


def is_shared(array: object) -> bool:
    """Whether ``array`` is a numpy view of snakepit shared memory."""
    return isinstance(array, np.ndarray) and _shared_buffer(array) is not None


def _sendable_buffer(array: object) -> _core.SharedBuffer | None:
    """The array's shared buffer if another process can still open it by name."""
    buffer = _shared_buffer(array)
    if buffer is not None and _state.unlinked and buffer.region_name in _state.unlinked:
        return None
    return buffer


def share(array: Any) -> np.ndarray[Any, Any]:
    """Copy ``array`` once into shared memory; already shared arrays are returned.

    An array in a region that is gone by name (its owner, a worker, died) is
    copied too: it is valid here, but no other process could open it.
    """
    source = np.asarray(array)
    if _sendable_buffer(source) is not None:
        return source
    out = empty(source.shape, source.dtype)
    np.copyto(out, source, casting="no")
    return out


def describe(array: np.ndarray[Any, Any]) -> TensorRef | None:
    """The TensorRef of a shared array, or None if it is not in shared memory.

    Unlike :func:`ref_of` it registers nothing: this is the codec's hot path.
    None too for an array whose region was unlinked (see :func:`share`).
    """
    buffer = _sendable_buffer(array)
    return None if buffer is None else _describe(array, buffer)


def _describe(array: np.ndarray[Any, Any], buffer: _core.SharedBuffer) -> TensorRef:
    region = buffer.region_name
    offset = buffer.data_offset
    return TensorRef(
        id=f"{region}:{offset}",
        shape=array.shape,
        dtype=dtype_name(array.dtype),
        strides=array.strides,
        offset=offset,
        region=region,
        nbytes=buffer.nbytes,
        byte_offset=array.__array_interface__["data"][0] - buffer.address,
        region_size=buffer.region_size,
    )


def ref_of(array: np.ndarray[Any, Any]) -> TensorRef:
    """The TensorRef of an array that lives in snakepit shared memory."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"ref_of() needs a numpy array, not {type(array).__name__}")
    buffer = _shared_buffer(array)
    if buffer is None:
        raise SharedMemoryError(
            "array is not in snakepit shared memory; use snakepit.share(array) first"
        )
    # Lets ref.release() find the reference this process holds.
    _state.holders[(buffer.region_name, buffer.data_offset)] = buffer
    return _describe(array, buffer)


class _Lease:
    """One reference on a foreign block, dropped when the last view dies."""

    __slots__ = ("__weakref__", "ledger", "offset", "region")

    def __init__(self, region: _core.Region, offset: int) -> None:
        self.region: _core.Region | None = region
        self.offset = offset
        self.ledger = _state.ledger if _core.name_owner(region.name) != os.getpid() else None
        if self.ledger is not None:
            self.ledger.record(region.name, offset)

    def release(self) -> None:
        region, self.region = self.region, None
        if region is not None and region.mapped:
            if self.ledger is not None:
                self.ledger.erase(region.name, self.offset)
            with contextlib.suppress(_core.CoreError):
                region.block_ref(self.offset, -1)
            name = region.name
            del region
            # The last view of a region its owner already unlinked: unmap it
            # now, or it pins its pages in /dev/shm until the next prune.
            _unmap_if_unused(name)

    def __del__(self) -> None:
        self.release()


def _attach(name: str, region_size: int) -> _core.Region:
    region = _state.mappings.get(name)
    if region is not None and region.mapped and region.size == region_size:
        return region
    with _state.lock:
        region = _state.mappings.get(name)
        if region is None or not region.mapped or region.size != region_size:
            # Our own arena's regions are attached like anyone else's: one more
            # mapping is cheap and keeps this path identical in every process.
            region = _core.Region.attach(name, region_size)
            _state.mappings[name] = region
        return region


def from_ref(
    ref: TensorRef, *, mode: RefMode = "acquire", readonly: bool = False
) -> np.ndarray[Any, Any]:
    """A numpy view of the memory ``ref`` describes, without copying.

    ``mode``: ``"acquire"`` takes a reference on the block that the returned
    array holds until it dies; ``"borrow"`` takes none (the sender keeps the
    block alive, as the pool does for call arguments); ``"adopt"`` takes over a
    reference the sender already added for us (results in transit).
    """
    if not isinstance(ref, TensorRef):
        raise InvalidDescriptorError(f"expected a TensorRef, got {type(ref).__name__}")
    ref.validate()
    if ref.region_size == 0:
        raise InvalidDescriptorError(f"TensorRef for {ref.region!r} lacks region_size")
    try:
        region = _attach(ref.region, ref.region_size)
        keepalive: object = None
        if mode == "acquire":
            region.block_ref(ref.offset, +1)
        if mode in ("acquire", "adopt"):
            keepalive = _Lease(region, ref.offset)
        buffer = region.buffer(ref.offset, ref.nbytes, readonly, keepalive)
    except _core.CoreError as exc:
        raise core_error(exc, "attach TensorRef", name=ref.region) from None
    if keepalive is not None:
        _state.holders[(ref.region, ref.offset)] = buffer
    array: np.ndarray[Any, Any] = np.ndarray(
        ref.shape,
        dtype=numpy_dtype(ref.dtype),
        buffer=memoryview(buffer),
        offset=ref.byte_offset,
        strides=ref.strides,
    )
    if readonly:
        array.flags.writeable = False
    return array


def retain(array: np.ndarray[Any, Any]) -> None:
    """Take a reference on the block under a borrowed shared array, held until
    the array (and every view of it) dies.

    A worker calls this for arguments its code kept beyond the call, so the
    caller's memory cannot be reused under them.
    """
    buffer = _shared_buffer(array)
    if buffer is None:
        return
    with core_errors("retain block", name=buffer.region_name):
        region = _attach(buffer.region_name, buffer.region_size)
        region.block_ref(buffer.data_offset, +1)
    weakref.finalize(array, _Lease(region, buffer.data_offset).release)


def install_ledger(ledger: LeaseLedger | None) -> None:
    """Note this process's references on foreign blocks in ``ledger`` (workers)."""
    _state.ledger = ledger


def drop_held_references(ledger: LeaseLedger) -> int:
    """Drop every reference a dead process noted in its ledger; returns how many.

    Called by the supervisor after a worker died. Names and offsets come from
    another process, so each is validated like any descriptor.
    """
    dropped = 0
    for name, offset, count in ledger.held():
        if _core.name_status(name) != _core.Status.OK:
            continue
        try:
            region = _state.mappings.get(name) or _core.Region.attach(name)
            for _ in range(count):
                region.block_ref(offset, -1)
                dropped += 1
        except _core.CoreError:
            continue
    ledger.clear()
    return dropped


def take_transfer_ref(array: np.ndarray[Any, Any]) -> TensorRef:
    """ref_of(array) plus one reference for a receiver to adopt (see from_ref)."""
    ref = ref_of(array)
    try:
        _attach(ref.region, ref.region_size).block_ref(ref.offset, +1)
    except _core.CoreError as exc:
        raise core_error(exc, "reference block", name=ref.region) from None
    return ref


def drop_transfer_ref(ref: TensorRef) -> None:
    """Drop a transfer reference that no receiver will adopt."""
    with contextlib.suppress(_core.CoreError, SnakepitError):
        _attach(ref.region, ref.region_size).block_ref(ref.offset, -1)


def release_ref(ref: TensorRef) -> None:
    """Drop the reference this process holds on ``ref``'s block (if any)."""
    buffer = _state.holders.pop((ref.region, ref.offset), None)
    if buffer is None:
        return
    owner = buffer.owner
    if isinstance(owner, (_core.Allocation, _Lease)):
        owner.release()


def block_refcount(ref: TensorRef) -> int:
    """The block's reference count across all processes (for diagnostics)."""
    with core_errors("read refcount", name=ref.region):
        return _attach(ref.region, ref.region_size).block_refcount(ref.offset, ref.nbytes)


def prune_mappings() -> int:
    """Unmap cached regions that were unlinked and that no live view uses."""
    with _state.lock:
        return sum(_unmap_if_unused(name) for name in list(_state.mappings))


def _unmap_if_unused(name: str) -> bool:
    """Unmap the cached region ``name`` if it was unlinked and nothing uses it."""
    with _state.lock:
        region = _state.mappings.get(name)
        if region is None:
            return False
        # Only the cache, `region` and getrefcount's argument refer to it:
        # no view, lease or buffer uses the mapping any more.
        if sys.getrefcount(region) > 3 or os.path.exists(SHM_DIR + name):
            return False
        del _state.mappings[name]
        _state.unlinked.discard(name)
        region.detach()
        return True


def _owner_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def list_regions() -> list[str]:
    """Names of every snakepit region in /dev/shm."""
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    return ["/" + e for e in entries if e.startswith(NAME_PREFIX)]


def collect_garbage(owner_pid: int | None = None) -> list[str]:
    """Unlink regions whose owner process is dead (or owned by ``owner_pid``).

    Returns the names removed. Regions of live processes are left alone.
    """
    removed = []
    for name in list_regions():
        if _core.name_status(name) != _core.Status.OK:
            continue
        owner = _core.name_owner(name)
        if owner_pid is not None:
            if owner != owner_pid:
                continue
        elif owner == os.getpid() or _owner_alive(owner):
            continue
        with contextlib.suppress(_core.CoreError):
            _core.unlink(name)
            removed.append(name)
    with _state.lock:
        _state.unlinked.update(name for name in removed if name in _state.mappings)
    return removed


def shm_space() -> tuple[int, int]:
    """(total, available) bytes of /dev/shm."""
    with core_errors("statvfs /dev/shm"):
        return _core.shm_space(SHM_DIR)
