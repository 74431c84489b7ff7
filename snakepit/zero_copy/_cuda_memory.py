"""CUDA memory this process owns: the one copy made of memory CUDA IPC cannot share.

Legacy CUDA IPC shares only ``cuMemAlloc`` allocations (docs/zero-copy.md,
"Memory CUDA IPC cannot share"). :func:`export_cuda_copy` copies a view of
any other kind once into a fresh ``cuMemAlloc`` :class:`CudaBuffer`, waits
for the copy, and exports that; the caller keeps the buffer alive until every
consumer has closed the ref (the carrier ties it to the call), then frees it.
The carrier decides when to copy (it warns once and records a telemetry
event); this module only copies.
"""

from __future__ import annotations

import weakref
from types import TracebackType
from typing import Any

from snakepit._core import CoreError, CudaDriver

from ._cuda import (
    GPUTensorRef,
    _contiguous_strides,
    _device,
    cuda_driver,
    export_cuda,
    synchronize_cuda,
)
from ._dtypes import dtype_name, numpy_dtype
from ._errors import core_error, core_errors
from ._ref import view_extent


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


def export_cuda_copy(
    ptr: int,
    shape: tuple[int, ...],
    dtype: Any,
    strides: tuple[int, ...] | None = None,
    device_id: int = 0,
    driver: CudaDriver | None = None,
    *,
    stream: int | None = None,
) -> tuple[GPUTensorRef, CudaBuffer]:
    """Copy the view at ``ptr`` once into a shareable buffer and export that.

    For memory :func:`export_cuda` refuses (UnshareableMemoryError: a
    stream-ordered pool, VMM, managed memory), and for any view a caller
    wants to hand over as a snapshot. The bytes the view spans are copied
    device to device with its strides kept; pending work is waited for
    before (``stream``, or the whole context) and the copy itself after, so
    the ref can be handed over at once. Returns the ref and the buffer, which
    the caller must keep alive until every consumer has closed the ref.
    """
    if type(ptr) is not int or ptr <= 0:
        raise ValueError(f"ptr must be a positive int device pointer, got {ptr!r}")
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    shape = tuple(shape)
    if strides is None:
        strides = _contiguous_strides(shape, numpy_dtype(name).itemsize)
    strides = tuple(strides)
    drv = driver if driver is not None else cuda_driver()
    low, high = view_extent(name, shape, strides, 0)
    buffer = CudaBuffer(max(high - low, 1), device_id, drv)
    try:
        synchronize_cuda(device_id, stream, drv)
        if high > low:
            with core_errors("copy", device_id=device_id):
                drv.memcpy(device_id, buffer.ptr, ptr + low, high - low)
        synchronize_cuda(device_id, None, drv)
        ref = export_cuda(buffer.ptr - low, shape, name, strides, device_id, drv)
    except BaseException:
        buffer.free()
        raise
    return ref, buffer


__all__ = ["CudaBuffer", "export_cuda_copy"]
