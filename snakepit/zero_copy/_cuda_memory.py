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

from typing import Any

from snakepit._core import CudaDriver

from ._cuda import (
    CudaBuffer,
    GPUTensorRef,
    cuda_driver,
    device_copy,
    export_cuda,
)
from ._dtypes import c_strides, dtype_name, numpy_dtype


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
        strides = c_strides(shape, numpy_dtype(name).itemsize)
    strides = tuple(strides)
    drv = driver if driver is not None else cuda_driver()
    buffer, copy_ptr = device_copy(drv, device_id, ptr, shape, name, strides, stream)
    try:
        ref = export_cuda(copy_ptr, shape, name, strides, device_id, drv)
    except BaseException:
        buffer.free()
        raise
    return ref, buffer


__all__ = ["export_cuda_copy"]
