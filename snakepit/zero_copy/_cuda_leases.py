"""Lifetimes of CUDA memory shared through pool calls (docs/zero-copy.md, GPU lifetimes).

Producer side: an exported CUDA object is kept alive here, in an
:class:`_Export`, until every consumer in every process has let go of it.
The count lives in shared memory: each export owns a *token*, a tiny block
of this process's arena whose reference count is the number of holders.
Consumers hold references on the token exactly as they do on any block (a
result's token travels with a reference for its receiver to adopt; a worker
that keeps an argument takes one of its own), so the worker ledger and the
supervisor's clean-up of a dead worker (:func:`._gc.drop_held_references`)
release a crashed consumer's share without anything CUDA-specific. When the
token is back to the producer's own reference, the object is dropped.

Consumer side: a peer's allocation is opened once per process, device and
allocation (:func:`open_view`); every view of it holds one share of the
mapping and one reference on the token, and closing the last view closes the
IPC mapping *before* the token lets the producer free the memory.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit._core import CoreError, CudaDriver
from snakepit.errors import DeviceError, InvalidDescriptorError, SnakepitError

from . import _gc, _mapping
from ._arena import zeros
from ._cuda import CudaIPCTensor, GPUTensorRef, cuda_driver, open_cuda
from ._errors import core_error
from ._ref import fields_of

#: Seconds between two looks at unpinned exports' tokens (only while some
#: exist): how long a consumer's release may take to free producer memory.
SWEEP_SECONDS = 0.05
_TOKEN_BYTES = 8


# Plain classes, not dataclasses: every worker imports this module at start.


class _Export:
    """One exported CUDA object and the shared token counting its holders."""

    __slots__ = ("fields", "obj", "pins", "ptr", "ref", "token")

    def __init__(
        self,
        obj: Any,
        token: np.ndarray[Any, Any],
        fields: tuple[Any, ...],
        ref: GPUTensorRef | None = None,
        ptr: int = 0,
    ) -> None:
        self.obj = obj
        self.token = token
        #: The token's block fields (see ``_ref.fields_of``).
        self.fields = fields
        #: What was exported: its descriptor and device pointer (None: not known).
        self.ref = ref
        self.ptr = ptr
        #: Encodings still holding it (their ``keepalive``): a call's arguments
        #: are borrowed by the worker, so the token alone does not count them.
        self.pins = 1

    @property
    def key(self) -> tuple[str, int]:
        """The token's (region name, data offset): how descriptors name the export."""
        return (self.fields[0], self.fields[2])


class _Producer:
    __slots__ = ("exports", "lock", "reaper", "reaper_lock", "released")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exports: dict[tuple[str, int], _Export] = {}
        self.reaper: threading.Thread | None = None
        # Re-entrant: a Pin may die (and wake the reaper) inside _wake itself.
        self.reaper_lock = threading.RLock()
        self.released = 0


_producer = _Producer()


def _after_fork_in_child() -> None:
    # No CUDA state survives fork: the parent's exports are the parent's.
    global _producer, _consumer
    _producer = _Producer()
    _consumer = _Consumer()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Pin:
    """Held by an encoding (in its keepalive) while the payload may be read."""

    __slots__ = ("__weakref__", "export")

    def __init__(self, export: _Export) -> None:
        self.export: _Export | None = export

    def __del__(self) -> None:
        export, self.export = self.export, None
        if export is not None:
            export.pins -= 1  # under the GIL
            if export.pins <= 0 and not _release_now(export):
                _wake()


def _release_now(export: _Export) -> bool:
    """Drop ``export`` at once if nobody holds its token (the common case: a
    call's arguments, once its reply came); False to leave it to the reaper."""
    producer = _producer
    # Never waits: this runs from __del__, maybe inside a sweep of this thread.
    if not producer.lock.acquire(blocking=False):
        return False
    try:
        if _refcount(export) > 1:
            return False
        if producer.exports.pop(export.key, None) is not None:
            producer.released += 1
    finally:
        producer.lock.release()
    return True


def lease(
    obj: Any, ref: GPUTensorRef | None = None, ptr: int = 0
) -> tuple[np.ndarray[Any, Any], Pin]:
    """Keep ``obj`` (a CUDA tensor being exported as ``ref``, from device
    pointer ``ptr``) alive until its token is free.

    Returns the token, whose block descriptor travels with the GPUTensorRef,
    and a pin for the encoding's keepalive.
    """
    token = zeros((_TOKEN_BYTES,), "uint8")
    fields = fields_of(token)
    assert fields is not None  # allocated in the arena just now
    export = _Export(obj, token, fields, ref, ptr)
    with _producer.lock:
        _producer.exports[export.key] = export
    return token, Pin(export)


def exported(region: object, offset: object) -> tuple[Any, GPUTensorRef | None, int] | None:
    """``(object, its ref, its pointer)`` this process exported under the token
    at ``(region, offset)``, or None."""
    export = _producer.exports.get((region, offset))  # type: ignore[arg-type]
    return None if export is None else (export.obj, export.ref, export.ptr)


def _refcount(export: _Export) -> int:
    region, region_size, offset, nbytes = export.fields[:4]
    try:
        return _mapping.block_refcount(region, region_size, offset, nbytes)
    except SnakepitError:
        return 1  # cannot read it (region gone): nobody else can hold it either


def sweep() -> int:
    """Drop exports no encoding pins and no consumer holds; returns how many.

    Runs on its own every :data:`SWEEP_SECONDS` while unpinned exports
    remain, and after the supervisor dropped a dead worker's references.
    """
    with _producer.lock:
        free = [
            export
            for export in _producer.exports.values()
            if export.pins <= 0 and _refcount(export) <= 1
        ]
        for export in free:
            del _producer.exports[export.key]
        _producer.released += len(free)
    # Dropped outside the lock: freeing a tensor may run arbitrary code.
    free.clear()
    return _producer.released


# A dead worker's token references, dropped by the supervisor, free exports now.
_gc.after_drop.append(sweep)


def outstanding() -> int:
    """Exports of this process that are still held somewhere (or pinned)."""
    return len(_producer.exports)


def drain(timeout: float) -> bool:
    """Wait up to ``timeout`` s until no consumer holds this process's exports.

    A producer that exits frees its device memory under its consumers' views
    (CUDA gives no way to keep it), so a worker that ends on purpose waits
    here first. True when nothing is held any more.
    """
    deadline = time.monotonic() + timeout
    while True:
        sweep()
        if not _producer.exports:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(SWEEP_SECONDS)


def _wake() -> None:
    """Start the reaper if exports wait for their consumers and none runs."""
    producer = _producer
    with producer.reaper_lock:
        if producer.reaper is not None:
            return  # it stops only under this lock, once nothing is left
        reaper = threading.Thread(
            target=_reap, args=(producer,), name="snakepit-cuda-leases", daemon=True
        )
        try:
            reaper.start()
        except RuntimeError:  # interpreter shutdown: the process frees everything
            return
        producer.reaper = reaper


def _reap(producer: _Producer) -> None:
    while True:
        sweep()
        with producer.reaper_lock:
            if producer is not _producer or not producer.exports:
                producer.reaper = None
                return
        time.sleep(SWEEP_SECONDS)


# ------------------------------------------------------------------ consumer


class _Mapping:
    """One open of a peer's allocation in this process, shared by its views."""

    __slots__ = ("root", "shares", "views")

    def __init__(self, root: CudaIPCTensor) -> None:
        self.root = root
        self.views = 0
        #: The live views' shares (their tokens keep the producer's memory).
        self.shares: weakref.WeakSet[_ViewShare] = weakref.WeakSet()


class _Consumer:
    __slots__ = ("lock", "mappings", "opens", "touched")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mappings: dict[tuple[str, int, bytes], _Mapping] = {}
        self.opens = 0
        #: Devices whose memory the current call received.
        self.touched: set[int] = set()


_consumer = _Consumer()


class _ViewShare:
    """What one view holds: a share of the mapping and a token reference.

    Passed to :class:`CudaIPCTensor` in the driver's place: the view's close
    (or collection) calls :meth:`ipc_close` once, which closes the IPC
    mapping with the last view, then lets the token go.
    """

    __slots__ = ("__weakref__", "driver", "key", "token")

    def __init__(
        self, driver: CudaDriver, key: tuple[str, int, bytes], token: np.ndarray[Any, Any] | None
    ) -> None:
        self.driver = driver
        self.key = key
        self.token = token

    def ipc_close(self, device_id: int, base: int) -> None:
        """Release this view's share (the real close comes with the last)."""
        consumer = _consumer
        with consumer.lock:
            mapping = consumer.mappings.get(self.key)
            last = mapping is not None and mapping.views <= 1
            if mapping is not None:
                mapping.views -= 1
                if last:
                    del consumer.mappings[self.key]
        try:
            if last and mapping is not None:
                # From a finalizer, maybe: a close that fails leaks a mapping
                # (the driver frees it with the process), it never raises here.
                with contextlib.suppress(SnakepitError):
                    mapping.root.close()
        finally:
            self.token = None  # after the close: the producer may free it now

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)


def open_view(
    ref: GPUTensorRef,
    token: np.ndarray[Any, Any] | None = None,
    opener: Callable[[GPUTensorRef], CudaIPCTensor] = open_cuda,
) -> CudaIPCTensor:
    """A view of a peer's CUDA allocation, opened once per process and device.

    The first view of an allocation opens its handle (``opener``); later ones
    share that mapping until the last is closed or collected. ``token`` (the
    producer's lease) is held by the view and let go after the close.
    Raises what :func:`~._cuda.open_cuda` raises.
    """
    driver = cuda_driver()
    key = (driver.path, ref.device_id, ref.handle)
    consumer = _consumer
    with consumer.lock:
        mapping = consumer.mappings.get(key)
        if mapping is None or mapping.root.closed:
            mapping = _Mapping(_open(opener, ref, len(consumer.mappings)))
            consumer.mappings[key] = mapping
            consumer.opens += 1
        elif mapping.root.ref.nbytes != ref.nbytes:
            ref.validate()
            reason = (
                f"the descriptor claims an allocation of {ref.nbytes} bytes but the handle's "
                f"allocation has {mapping.root.ref.nbytes}"
            )
            raise InvalidDescriptorError(f"open GPUTensorRef failed: {reason}", reason=reason)
        mapping.views += 1
        root = mapping.root
        consumer.touched.add(root.device_id)
        share = _ViewShare(driver, key, token)
        mapping.shares.add(share)
    # CudaIPCTensor calls `ipc_close` on what it is given as its driver.
    return CudaIPCTensor(ref, share, root.base, root.device_id, root.readonly)  # type: ignore[arg-type]


def _open(
    opener: Callable[[GPUTensorRef], CudaIPCTensor], ref: GPUTensorRef, open_now: int
) -> CudaIPCTensor:
    try:
        return opener(ref)
    except DeviceError as exc:
        full = "TOO_MANY_PEERS" in str(exc) or "OUT_OF_MEMORY" in str(exc)
        if not full or isinstance(exc, InvalidDescriptorError):
            raise
        # The driver's table of IPC opens is full (or device memory is).
        raise DeviceError(
            f"cannot open another CUDA IPC handle: {open_now} peer allocations are open "
            f"in this process; drop (or close) received CUDA tensors ({exc})",
            device=exc.device,
        ) from exc


def forwarded(ptr: int) -> tuple[GPUTensorRef, int, np.ndarray[Any, Any]] | None:
    """For a pointer into a peer's allocation this process has open (a
    received tensor sent on, or back): the peer's ref of that allocation, the
    base it is mapped at here, and a token that keeps the peer's memory; None
    for memory that is not such a view. CUDA cannot export opened memory
    again, so the peer's own handle travels on."""
    with _consumer.lock:
        for mapping in _consumer.mappings.values():
            root = mapping.root
            if root.closed or not root.base <= ptr < root.base + root.ref.nbytes:
                continue
            for share in mapping.shares:
                if share.token is not None:
                    return root.ref, root.base, share.token
    return None


def open_count() -> int:
    """Allocations of peers this process has open now (one per process+device+allocation)."""
    return len(_consumer.mappings)


def opens_total() -> int:
    """Handles this process has opened so far (reopens of a cached mapping not counted)."""
    return _consumer.opens


def settle() -> None:
    """Wait for this process's pending work on the devices whose memory a call
    received, so the caller reads what the call wrote (the worker calls this
    before it replies). Uses torch's or CuPy's synchronize where those are
    loaded, else the driver's, where it offers one."""
    touched = _consumer.touched
    if not touched:
        return
    devices = sorted(touched)
    touched.clear()
    for device in devices:
        synchronize(device, None)


def synchronize(device: int, stream: int | None) -> None:
    """Complete pending work on ``stream`` (None: every stream) of ``device``.

    The driver does it in the device's primary context (the one torch and
    CuPy use) where its binding offers ``synchronize``; otherwise torch's or
    CuPy's device-wide synchronize, when this process has imported them.
    Raises DeviceError if the driver's call fails.
    """
    driver = cuda_driver()
    sync = getattr(driver, "synchronize", None)
    if sync is not None:
        try:
            sync(device, stream)
        except CoreError as exc:
            raise core_error(exc, "synchronize", device_id=device) from None
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize(device)
        return
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        cupy.cuda.Device(device).synchronize()
