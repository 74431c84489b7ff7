"""Mappings of shared-memory regions in this process, and block references.

The bottom of ``zero_copy``: it maps regions by name (one cached mapping per
region), takes and drops references on their blocks and builds numpy views
over them. It speaks in plain fields (region name and size, block offset and
length, shape, dtype, strides) and knows no descriptor class: the
descriptors (``_ref``) and the carriers above them call down into it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Literal, cast
from weakref import WeakValueDictionary

if TYPE_CHECKING:
    import numpy as np

from snakepit import _core

from ._dtypes import c_strides, numpy_dtype
from ._errors import core_error, core_errors
from ._ledger import LazyLedger, LeaseLedger

SHM_DIR = "/dev/shm"

RefMode = Literal["acquire", "borrow", "adopt"]


class _Mappings:
    """What this process maps and holds, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.regions: dict[str, _core.Region] = {}
        # Lets ref.release() find what this process holds for a block.
        self.holders: WeakValueDictionary[tuple[str, int], _core.SharedBuffer] = (
            WeakValueDictionary()
        )
        # Regions this process unlinked for their dead owner while it still
        # maps them: arrays there stay valid here but cannot be opened by
        # name elsewhere, so they are copied when sent on.
        self.unlinked: set[str] = set()
        # In a worker: where references on the supervisor's blocks are noted.
        self.ledger: LeaseLedger | LazyLedger | None = None
        #: Forks this process is a child of (counted in each child): a lease
        #: made before one holds its parent's reference, not this process's.
        self.generation = 0


state = _Mappings()


def _after_fork_in_child() -> None:
    state.lock = threading.RLock()
    state.generation += 1
    # The parent's holds are not the child's: ref.release() here must not
    # drop one (the parent's own descriptors would lose their block).
    state.holders = WeakValueDictionary()


os.register_at_fork(after_in_child=_after_fork_in_child)


def install_ledger(ledger: LeaseLedger | LazyLedger | None) -> None:
    """Note this process's references on foreign blocks in ``ledger`` (workers)."""
    state.ledger = ledger


def shared_buffer(array: object) -> _core.SharedBuffer | None:
    """The shared buffer under a numpy array (through its bases), or None."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(array) is numpy.ndarray:
        base: object = cast("np.ndarray[Any, Any]", array).base
        if type(base) is _core.SharedBuffer:  # made by the arena, or received
            return base
    import numpy as np

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


def sendable_buffer(array: object) -> _core.SharedBuffer | None:
    """The array's shared buffer if another process can still open it by name."""
    buffer = shared_buffer(array)
    if buffer is not None and state.unlinked and buffer.region_name in state.unlinked:
        return None
    return buffer


def hold(buffer: _core.SharedBuffer) -> None:
    """Remember ``buffer`` so that releasing its block's descriptor finds it."""
    state.holders[(buffer.region_name, buffer.data_offset)] = buffer


class Lease:
    """One reference on a foreign block, dropped when the last view dies."""

    __slots__ = ("__weakref__", "generation", "ledger", "offset", "region")

    def __init__(self, region: _core.Region, offset: int) -> None:
        self.region: _core.Region | None = region
        self.offset = offset
        self.generation = state.generation
        self.ledger = state.ledger if _core.name_owner(region.name) != os.getpid() else None
        if self.ledger is not None:
            self.ledger.record(region.name, offset)

    def release(self) -> None:
        """Drop the reference (idempotent); unmap the region if that was its last use."""
        region, self.region = self.region, None
        if region is not None and region.mapped and self.generation == state.generation:
            if self.ledger is not None:
                self.ledger.erase(region.name, self.offset)
            with contextlib.suppress(_core.CoreError):
                region.block_ref(self.offset, -1)
            name = region.name
            del region
            # The last view of a region its owner already unlinked: unmap it
            # now, or it pins its pages in /dev/shm until the next prune.
            unmap_if_unused(name)

    def __del__(self) -> None:
        self.release()


def attach(name: str, region_size: int) -> _core.Region:
    """This process's mapping of region ``name`` (cached; CoreError on failure)."""
    region = state.regions.get(name)
    if region is not None and region.mapped and region.size == region_size:
        return region
    with state.lock:
        region = state.regions.get(name)
        if region is None or not region.mapped or region.size != region_size:
            # Our own arena's regions are attached like anyone else's: one more
            # mapping is cheap and keeps this path identical in every process.
            region = _core.Region.attach(name, region_size)
            state.regions[name] = region
        return region


def view(
    region_name: str,
    region_size: int,
    offset: int,
    nbytes: int,
    byte_offset: int,
    shape: tuple[int, ...],
    dtype: str,
    strides: tuple[int, ...],
    mode: RefMode,
    readonly: bool,
    operation: str,
) -> np.ndarray[Any, Any]:
    """A numpy view of a block, without copying (fields already validated).

    ``mode``: ``"acquire"`` takes a reference on the block that the returned
    array holds until it dies; ``"borrow"`` takes none (the sender keeps the
    block alive); ``"adopt"`` takes over a reference the sender already added
    for us (results in transit).
    """
    try:
        region = attach(region_name, region_size)
        keepalive: object = None
        if mode != "borrow":
            if mode == "acquire":
                region.block_ref(offset, +1)
            keepalive = Lease(region, offset)
        buffer = region.buffer(offset, nbytes, readonly, keepalive)
    except _core.CoreError as exc:
        raise core_error(exc, operation, name=region_name) from None
    if keepalive is not None:
        state.holders[(region_name, offset)] = buffer
    resolved = numpy_dtype(dtype)
    if (
        not readonly
        and not byte_offset
        and (
            strides[0] == resolved.itemsize  # the common block: 1-D (lengths checked already)
            if len(shape) == 1
            else strides == c_strides(shape, resolved.itemsize)
        )
    ):
        # Most blocks: the core makes the array without numpy's argument
        # parsing (about an eighth of the time), as for a new allocation.
        made: np.ndarray[Any, Any] = _core.array_over(buffer, shape, resolved)
        return made
    import numpy as np

    array: np.ndarray[Any, Any] = np.ndarray(
        shape,
        dtype=resolved,
        buffer=memoryview(buffer),
        offset=byte_offset,
        strides=strides,
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
    buffer = shared_buffer(array)
    if buffer is None:
        return
    with core_errors("retain block", name=buffer.region_name):
        region = attach(buffer.region_name, buffer.region_size)
        region.block_ref(buffer.data_offset, +1)
    weakref.finalize(array, Lease(region, buffer.data_offset).release)


def add_ref(region_name: str, region_size: int, offset: int) -> None:
    """One more reference on a block, for a receiver to adopt (a transfer)."""
    try:
        attach(region_name, region_size).block_ref(offset, +1)
    except _core.CoreError as exc:
        raise core_error(exc, "reference block", name=region_name) from None


def drop_ref(region_name: str, region_size: int, offset: int) -> None:
    """Drop a transfer reference that no receiver will adopt (never raises)."""
    with contextlib.suppress(_core.CoreError):
        attach(region_name, region_size).block_ref(offset, -1)


def release_held(region_name: str, offset: int) -> None:
    """Drop the reference this process holds on a block (if any)."""
    buffer = state.holders.pop((region_name, offset), None)
    if buffer is None:
        return
    owner = buffer.owner
    if isinstance(owner, (_core.Allocation, Lease)):
        owner.release()


def block_refcount(region_name: str, region_size: int, offset: int, nbytes: int) -> int:
    """A block's reference count across all processes (for diagnostics)."""
    with core_errors("read refcount", name=region_name):
        return attach(region_name, region_size).block_refcount(offset, nbytes)


def unmap_if_unused(name: str) -> bool:
    """Unmap the cached region ``name`` if it was unlinked and nothing uses it."""
    with state.lock:
        region = state.regions.get(name)
        if region is None:
            return False
        # Only the cache, `region` and getrefcount's argument refer to it:
        # no view, lease or buffer uses the mapping any more.
        if sys.getrefcount(region) > 3 or os.path.exists(SHM_DIR + name):
            return False
        del state.regions[name]
        state.unlinked.discard(name)
        region.detach()
        return True
