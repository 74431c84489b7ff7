"""CUDA IPC: hand device memory to another process as a 64-byte handle (docs/zero-copy.md).

The C core loads the CUDA driver library at run time (``libcuda.so.1``, or
the path in ``SNAKEPIT_CUDA_DRIVER``); nothing here imports torch or cupy.
:func:`export_cuda` turns a device pointer into a :class:`GPUTensorRef`;
:func:`open_cuda` in *another* process maps it and returns a
:class:`CudaIPCTensor` exposing ``__cuda_array_interface__``.

API for carriers (the pool-call carrier builds on these):

* ``GPUTensorRef.device_uuid`` names the GPU (``GPU-xxxxxxxx-...``, from
  ``cuDeviceGetUuid_v2``); ``device_id`` stays the *exporter's* ordinal.
  :func:`open_cuda` maps the UUID to this process's own ordinal (its own
  ``CUDA_VISIBLE_DEVICES``) and raises DeviceNotAvailableError when this
  process cannot see that GPU; ``CudaIPCTensor.device_id`` is the local
  ordinal. Refs without a UUID (older senders) open on ``device_id``.
* ``ptr`` may point inside an allocation: the handle is the base's, and
  ``offset`` says where the view starts. :func:`open_cuda` checks the whole
  view against the size the driver reports for the opened allocation.
* :func:`export_cuda` refuses memory that legacy CUDA IPC cannot share (a
  stream-ordered pool such as ``cudaMallocAsync``, VMM as torch's
  ``expandable_segments`` uses, managed, pinned host memory) with
  UnshareableMemoryError naming the kind; :func:`memory_kind` tells in
  advance. ``export_cuda_copy`` (``_cuda_memory``) copies such a tensor once
  into a ``cuMemAlloc`` buffer that can be shared.
* Ordering: :func:`synchronize_cuda` waits until the producer's pending work
  (the whole context, or one stream) is done; call it before handing a ref
  over, or pass ``export_cuda(..., synchronize=True)`` / ``stream=...``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from snakepit._core import (
    CUDA_IPC_HANDLE_SIZE,
    CUDA_MAX_DEVICES,
    CoreError,
    CudaDriver,
    Status,
)
from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    UnshareableMemoryError,
)

from . import _cuda_devices, _dlpack
from ._dtypes import c_strides, dtype_name, numpy_dtype
from ._errors import DEFAULT_DRIVER, DRIVER_ENV, core_error, core_errors
from ._ref import MAX_FIELD, StridedDescriptor, layout_problem, view_extent

#: ``kDLCUDA`` in DLPack's ``DLDeviceType``.
DLPACK_CUDA = 2

_drivers: dict[str, CudaDriver] = {}
_drivers_lock = threading.Lock()


def _device(device_id: int | None) -> str:
    return "cuda" if device_id is None else f"cuda:{device_id}"


def cuda_driver(path: str | None = None) -> CudaDriver:
    """The loaded CUDA driver (cached per path).

    ``path`` defaults to ``$SNAKEPIT_CUDA_DRIVER``, then ``libcuda.so.1``.
    Raises DeviceNotAvailableError when the library cannot be loaded, lacks an
    entry point, or ``cuInit`` fails.
    """
    chosen = path or os.environ.get(DRIVER_ENV) or DEFAULT_DRIVER
    with _drivers_lock:
        driver = _drivers.get(chosen)
        if driver is None:
            with core_errors("load"):
                driver = CudaDriver.load(chosen)
            _drivers[chosen] = driver
    return driver


@dataclass(frozen=True, slots=True)
class GPUTensorRef(StridedDescriptor):
    """Where a CUDA tensor lives, as another process can open it.

    ``handle`` is the allocation's 64-byte CUDA IPC handle, ``nbytes`` the
    size of the whole allocation, ``offset`` where element ``[0, ..., 0]``
    lies in bytes from the allocation's base, and ``strides`` are in bytes
    (as in TensorRef). ``device_uuid`` names the GPU in every process
    (``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``); ``device_id`` is the
    exporter's ordinal, which means another GPU under another
    ``CUDA_VISIBLE_DEVICES``, so a receiver goes by the UUID.
    """

    handle: bytes
    offset: int
    shape: tuple[int, ...]
    dtype: str
    strides: tuple[int, ...]
    device_id: int
    nbytes: int
    device_uuid: str = ""

    def _where(self) -> str:
        return f" for {_device(self.device_id)}"

    def __dlpack__(self, **protocol: Any) -> Any:
        """Open the ref (:func:`open_cuda`) and export it; the capsule keeps the mapping open."""
        return open_cuda(self).__dlpack__(**protocol)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(2, ordinal)``: kDLCUDA and this process's ordinal of the ref's GPU."""
        return (DLPACK_CUDA, local_device(self, cuda_driver()))

    def _start(self) -> int:
        return self.offset

    def _problem(self) -> str | None:
        handle: object = self.handle
        if type(handle) is not bytes or len(self.handle) != CUDA_IPC_HANDLE_SIZE:
            size = len(handle) if isinstance(handle, bytes | bytearray) else "not bytes"
            return f"handle must be {CUDA_IPC_HANDLE_SIZE} bytes, got {size}"
        for field in ("offset", "nbytes"):
            value = getattr(self, field)
            if type(value) is not int or not 0 <= value < MAX_FIELD:
                return f"{field} must be an int in [0, 2**62), got {value!r}"
        if self.nbytes == 0:
            return "nbytes (the allocation size) must be positive"
        device_id: object = self.device_id
        if type(device_id) is not int or not 0 <= self.device_id < CUDA_MAX_DEVICES:
            return f"device_id must be an int in [0, {CUDA_MAX_DEVICES}), got {device_id!r}"
        uuid: object = self.device_uuid
        if uuid != "" and (type(uuid) is not str or _cuda_devices.uuid_bytes(uuid) is None):
            return f"device_uuid must be '' or a CUDA UUID (GPU-xxxxxxxx-...), got {uuid!r}"
        problem = layout_problem(self.dtype, self.shape, self.strides)
        if problem is not None:
            return problem
        low, high = self.extent()
        if low < 0 or high > self.nbytes:
            return (
                f"view spans bytes [{low}, {high}) of an allocation of {self.nbytes} bytes "
                f"(shape {self.shape}, strides {self.strides}, offset {self.offset})"
            )
        return None


def memory_kind(ptr: int, device_id: int = 0, driver: CudaDriver | None = None) -> str:
    """What kind of CUDA memory ``ptr`` is, as the driver's pointer attributes tell.

    ``"device"`` (``cuMemAlloc``: CUDA IPC shares it), ``"pool"`` (a
    stream-ordered pool: ``cudaMallocAsync``), ``"vmm"`` (``cuMemCreate`` +
    ``cuMemMap``, as torch's ``expandable_segments``), ``"managed"`` or ``"host"``
    (pinned host memory). Raises DeviceError for a pointer that is no CUDA
    memory, DeviceNotAvailableError without a driver.
    """
    drv = driver if driver is not None else cuda_driver()
    with core_errors("export", device_id=device_id):
        return drv.pointer_info(device_id, ptr)[0]


def synchronize_cuda(
    device_id: int = 0, stream: int | None = None, driver: CudaDriver | None = None
) -> None:
    """Wait until pending work on ``device_id`` is done: all of it, or one stream's.

    ``stream`` is a ``CUstream`` handle as an int (``torch.cuda.Stream.cuda_stream``,
    ``cupy.cuda.Stream.ptr``; 1 and 2 are the legacy and per-thread default
    streams, as in DLPack), or None for the whole context (``cuCtxSynchronize``).
    A producer calls this before handing a GPUTensorRef to another process, so
    that the consumer reads finished data.
    """
    if stream is not None and (type(stream) is not int or not 0 <= stream < 1 << 64):
        raise ValueError(f"stream must be None or a CUstream handle (an int), got {stream!r}")
    drv = driver if driver is not None else cuda_driver()
    with core_errors("synchronize", device_id=device_id):
        drv.synchronize(device_id, stream)


def unshareable_error(
    kind: str, ptr: int, device_id: int, detail: str = ""
) -> UnshareableMemoryError:
    """The UnshareableMemoryError for memory of ``kind`` at ``ptr``."""
    why = _UNSHAREABLE_WHY.get(kind, "CUDA IPC handles cover only cuMemAlloc allocations")
    reason = f"pointer 0x{ptr:x} is {kind} memory: {why}"
    return UnshareableMemoryError(
        f"cannot export CUDA memory by IPC: {reason}" + (f" ({detail})" if detail else ""),
        device=_device(device_id),
        memory_kind=kind,
        reason=reason,
    )


_UNSHAREABLE_WHY = {
    "pool": (
        "stream-ordered pool allocations (cudaMallocAsync) need the pool's own export "
        "(cuMemPoolExportPointer), not cuIpcGetMemHandle"
    ),
    "vmm": (
        "virtual-memory-management allocations (cuMemCreate/cuMemMap, torch "
        "expandable_segments) are not legacy-IPC capable; they need "
        "cuMemExportToShareableHandle"
    ),
    "managed": "managed (unified) memory cannot be shared by CUDA IPC handles",
    "host": "pinned host memory is not device memory; CUDA IPC handles cannot name it",
}


def export_cuda(
    ptr: int,
    shape: tuple[int, ...],
    dtype: Any,
    strides: tuple[int, ...] | None = None,
    device_id: int = 0,
    driver: CudaDriver | None = None,
    *,
    synchronize: bool = False,
    stream: int | None = None,
) -> GPUTensorRef:
    """Describe the CUDA tensor at device pointer ``ptr`` for another process.

    ``ptr`` may point inside an allocation: the handle is taken for the
    allocation's base and ``offset`` records where ``ptr`` lies. ``strides``
    are in bytes (None: C-contiguous). The ref carries the device's UUID;
    ``device_id`` is the ordinal whose context is used when none is current
    (the driver's own answer for the pointer wins). With ``synchronize=True``
    (or a ``stream`` handle) pending work is waited for first, see
    :func:`synchronize_cuda`; otherwise synchronise before handing it over.
    Raises UnshareableMemoryError for memory CUDA IPC cannot share (see
    :func:`memory_kind`; ``export_cuda_copy`` copies it once),
    DeviceNotAvailableError without a CUDA driver.
    """
    if type(ptr) is not int or ptr <= 0:
        raise ValueError(f"ptr must be a positive int device pointer, got {ptr!r}")
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    shape = tuple(shape)
    if strides is None:
        strides = c_strides(shape, numpy_dtype(name).itemsize)
    if type(device_id) is not int or not 0 <= device_id < CUDA_MAX_DEVICES:
        raise ValueError(f"device_id must be an int in [0, {CUDA_MAX_DEVICES}), got {device_id!r}")
    drv = driver if driver is not None else cuda_driver()
    try:
        handle, offset, size, _kind, ordinal = drv.ipc_export_info(device_id, ptr)
    except CoreError as exc:
        if exc.status == Status.UNSHAREABLE:
            raise unshareable_error(exc.memory_kind, ptr, device_id, exc.detail) from None
        raise core_error(exc, "export", device_id=device_id) from None
    if ordinal >= 0:
        device_id = ordinal
    if synchronize or stream is not None:
        synchronize_cuda(device_id, stream, drv)
    uuid = _cuda_devices.device_uuid(device_id, drv)
    ref = GPUTensorRef(handle, offset, shape, name, tuple(strides), device_id, size, uuid)
    ref.validate()
    return ref


def local_device(ref: GPUTensorRef, driver: CudaDriver) -> int:
    """This process's ordinal of ``ref``'s GPU (by UUID; ``device_id`` for refs without one)."""
    if not ref.device_uuid:
        return ref.device_id
    return _cuda_devices.ordinal_of(ref.device_uuid, driver)


def _free(driver: CudaDriver, device_id: int, ptr: int) -> CoreError | None:
    # Runs once, from free() or the finalizer; never raises (interpreter exit).
    try:
        driver.mem_free(device_id, ptr)
    except CoreError as exc:
        return exc
    return None


class CudaBuffer:
    """A ``cuMemAlloc`` allocation owned by this process (freed by :meth:`free`, or when collected).

    Memory from it can be exported with :func:`export_cuda`. Free it only once
    every process that opened a ref to it has closed it: CUDA leaves reads of
    freed memory undefined.
    """

    __slots__ = ("__weakref__", "_finalizer", "device_id", "nbytes", "ptr")

    def __init__(self, nbytes: int, device_id: int = 0, driver: CudaDriver | None = None) -> None:
        if type(nbytes) is not int or nbytes <= 0:
            raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
        drv = driver if driver is not None else cuda_driver()
        with core_errors("alloc", device_id=device_id):
            ptr = drv.mem_alloc(device_id, nbytes)
        #: Device pointer of the allocation's base.
        self.ptr = ptr
        self.nbytes = nbytes
        self.device_id = device_id
        self._finalizer = weakref.finalize(self, _free, drv, device_id, ptr)

    @property
    def freed(self) -> bool:
        return not self._finalizer.alive

    def free(self) -> None:
        """Free the allocation (idempotent)."""
        if not self._finalizer.alive:
            return
        error = self._finalizer()
        if error is not None:
            raise core_error(error, "free", device_id=self.device_id)

    def __enter__(self) -> CudaBuffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.free()

    def __repr__(self) -> str:
        state = "freed" if self.freed else f"ptr=0x{self.ptr:x}"
        return f"CudaBuffer({state}, nbytes={self.nbytes}, device={_device(self.device_id)})"


def device_copy(
    driver: CudaDriver,
    device_id: int,
    ptr: int,
    shape: tuple[int, ...],
    dtype: str,
    strides: tuple[int, ...],
    stream: int | None = None,
) -> tuple[CudaBuffer, int]:
    """Copy the bytes a view spans into a new CudaBuffer, strides kept; wait for it.

    Pending work is waited for first (``stream``, or the whole context), the
    device-to-device copy (asynchronous to the host) after. Returns the
    buffer and the pointer of element ``[0, ..., 0]`` in it.
    """
    low, high = view_extent(dtype, shape, strides, 0)
    buffer = CudaBuffer(max(high - low, 1), device_id, driver)
    try:
        synchronize_cuda(device_id, stream, driver)
        if high > low:
            with core_errors("copy", device_id=device_id):
                driver.memcpy(device_id, buffer.ptr, ptr + low, high - low)
        synchronize_cuda(device_id, None, driver)
    except BaseException:
        buffer.free()
        raise
    return buffer, buffer.ptr - low


def device_copier(
    driver: Callable[[], CudaDriver],
    device_id: int,
    ptr: int,
    shape: tuple[int, ...],
    dtype: str,
    strides: tuple[int, ...],
) -> _dlpack.DeviceCopier:
    """A ``copy=True`` copier for ``_dlpack.device_capsule`` (BufferError if impossible)."""

    def copier() -> tuple[object, int, tuple[int, ...]]:
        try:
            buffer, start = device_copy(driver(), device_id, ptr, shape, dtype, strides)
        except DeviceError as exc:
            raise BufferError(f"copy=True needs a device copy, which failed: {exc}") from exc
        return buffer, start, strides

    return copier


def _close_mapping(driver: CudaDriver, device_id: int, base: int) -> CoreError | None:
    # Runs once: from close() or when the tensor is collected. Never raises,
    # so that a finalizer at interpreter exit cannot fail noisily.
    try:
        driver.ipc_close(device_id, base)
    except CoreError as exc:
        return exc
    return None


class CudaIPCTensor:
    """A peer's CUDA tensor opened through IPC, without a copy.

    It exposes ``__cuda_array_interface__`` (version 3) and
    ``__dlpack_device__``; the IPC mapping is closed by :meth:`close`, on
    leaving a ``with`` block, or when the object is collected. Consumers that
    view its memory must not outlive it.
    """

    __slots__ = ("__weakref__", "_driver", "_finalizer", "base", "device_id", "readonly", "ref")

    def __init__(
        self,
        ref: GPUTensorRef,
        driver: CudaDriver,
        base: int,
        device_id: int | None = None,
        readonly: bool = False,
    ) -> None:
        self.ref = ref
        #: Base of the mapped allocation (what cuIpcOpenMemHandle returned).
        self.base = base
        #: This process's ordinal of the tensor's GPU (found by its UUID).
        self.device_id = ref.device_id if device_id is None else device_id
        #: Whether consumers are told not to write (DLPack READ_ONLY, CAI data flag).
        self.readonly = readonly
        self._driver = driver
        self._finalizer = weakref.finalize(self, _close_mapping, driver, self.device_id, base)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def ptr(self) -> int:
        """Device pointer of element ``[0, ..., 0]``."""
        if self.closed:
            raise DeviceError("the CUDA IPC tensor is closed", device=_device(self.device_id))
        return self.base + self.ref.offset

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        ref = self.ref
        dtype = numpy_dtype(ref.dtype)
        contiguous = ref.strides == c_strides(ref.shape, dtype.itemsize)
        return {
            "shape": ref.shape,
            # numpy spells bfloat16 as a raw 2-byte type ("<V2").
            "typestr": dtype.str,
            "data": (self.ptr, self.readonly),
            "strides": None if contiguous else ref.strides,
            "version": 3,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(2, device_id)``: kDLCUDA, this process's ordinal."""
        return (DLPACK_CUDA, self.device_id)

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule over the mapped memory (``copy=True``: over a private device copy).

        The capsule keeps this tensor (so the IPC mapping) alive until its
        consumer deletes it; :meth:`close` before then invalidates the
        consumer. See ``_dlpack`` for ``max_version``, ``dl_device``,
        ``copy``, ``stream`` and the READ_ONLY flag.
        """
        ref, ptr = self.ref, self.ptr
        return _dlpack.device_capsule(
            self,
            ptr,
            self.device_id,
            ref.shape,
            ref.dtype,
            ref.strides,
            readonly=self.readonly,
            copier=device_copier(
                lambda: self._driver, self.device_id, ptr, ref.shape, ref.dtype, ref.strides
            ),
            stream=stream,
            max_version=max_version,
            dl_device=dl_device,
            copy=copy,
        )

    def close(self) -> None:
        """Close the IPC mapping (idempotent); views of it become invalid."""
        if not self._finalizer.alive:
            return
        error = self._finalizer()
        if error is not None:
            raise core_error(error, "close", device_id=self.device_id)

    def __enter__(self) -> CudaIPCTensor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"ptr=0x{self.base + self.ref.offset:x}"
        return (
            f"CudaIPCTensor({state}, shape={self.ref.shape}, dtype={self.ref.dtype}, "
            f"device=cuda:{self.device_id})"
        )


def open_cuda(
    ref: GPUTensorRef, driver: CudaDriver | None = None, *, readonly: bool = False
) -> CudaIPCTensor:
    """Open a GPUTensorRef exported by another process.

    The descriptor is validated first (InvalidDescriptorError); its GPU is
    found by UUID among the devices this process sees (DeviceNotAvailableError
    if it cannot see it); the view must fit in the allocation the driver
    opened (InvalidDescriptorError otherwise, the mapping closed again).
    Opening in the exporting process raises DeviceError (CUDA refuses it);
    without a driver, DeviceNotAvailableError. The returned tensor must be
    closed (or dropped) once consumers are done with it. ``readonly`` marks
    its exports (DLPack, ``__cuda_array_interface__``) read-only.
    """
    if not isinstance(ref, GPUTensorRef):
        raise TypeError(f"open_cuda() needs a GPUTensorRef, not {type(ref).__name__}")
    ref.validate()
    try:
        drv = driver if driver is not None else cuda_driver()
    except DeviceNotAvailableError as exc:
        # CUDA_VISIBLE_DEVICES="" (or no GPU at all) fails cuInit itself.
        if not ref.device_uuid:
            raise
        raise _cuda_devices.not_visible(ref.device_uuid, exc.reason or str(exc)) from exc
    device_id = local_device(ref, drv)
    with core_errors("open", device_id=device_id):
        base, size = drv.ipc_open(device_id, ref.handle)
    reason = None
    if size == 0:
        reason = "the driver cannot tell the size of the opened allocation"
    elif size < ref.nbytes:
        reason = (
            f"the descriptor claims an allocation of {ref.nbytes} bytes but the handle's "
            f"allocation has {size}"
        )
    if reason is not None:
        error = _close_mapping(drv, device_id, base)
        if error is not None:
            reason += f" (and closing it failed: {error.detail or error})"
        raise InvalidDescriptorError(f"open GPUTensorRef failed: {reason}", reason=reason)
    return CudaIPCTensor(ref, drv, base, device_id, readonly)


__all__ = [
    "DEFAULT_DRIVER",
    "DRIVER_ENV",
    "CudaBuffer",
    "CudaIPCTensor",
    "GPUTensorRef",
    "cuda_driver",
    "device_copier",
    "device_copy",
    "export_cuda",
    "local_device",
    "memory_kind",
    "open_cuda",
    "synchronize_cuda",
    "unshareable_error",
]
