"""CUDA IPC: hand device memory to another process as a 64-byte handle (docs/zero-copy.md).

The C core loads the CUDA driver library at run time (``libcuda.so.1``, or
the path in ``SNAKEPIT_CUDA_DRIVER``); nothing here imports torch or cupy.
:func:`export_cuda` turns a device pointer into a :class:`GPUTensorRef`;
:func:`open_cuda` in *another* process maps it and returns a
:class:`CudaIPCTensor` exposing ``__cuda_array_interface__``.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from snakepit._core import CUDA_IPC_HANDLE_SIZE, CUDA_MAX_DEVICES, CoreError, CudaDriver
from snakepit.errors import DeviceError, InvalidDescriptorError

from ._dtypes import dtype_name, numpy_dtype
from ._errors import DEFAULT_DRIVER, DRIVER_ENV, core_error, core_errors
from ._ref import MAX_FIELD, StridedDescriptor, layout_problem

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


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides: list[int] = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


@dataclass(frozen=True, slots=True)
class GPUTensorRef(StridedDescriptor):
    """Where a CUDA tensor lives, as another process can open it.

    ``handle`` is the allocation's 64-byte CUDA IPC handle, ``nbytes`` the
    size of the whole allocation, ``offset`` where element ``[0, ..., 0]``
    lies in bytes from the allocation's base, and ``strides`` are in bytes
    (as in TensorRef).
    """

    handle: bytes
    offset: int
    shape: tuple[int, ...]
    dtype: str
    strides: tuple[int, ...]
    device_id: int
    nbytes: int

    def _where(self) -> str:
        return f" for {_device(self.device_id)}"

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


def export_cuda(
    ptr: int,
    shape: tuple[int, ...],
    dtype: Any,
    strides: tuple[int, ...] | None = None,
    device_id: int = 0,
    driver: CudaDriver | None = None,
) -> GPUTensorRef:
    """Describe the CUDA tensor at device pointer ``ptr`` for another process.

    ``ptr`` may point inside an allocation: the handle is taken for the
    allocation's base and ``offset`` records where ``ptr`` lies. ``strides``
    are in bytes (None: C-contiguous). Synchronise the stream that produced
    the data before handing the descriptor over. Raises
    DeviceNotAvailableError without a CUDA driver.
    """
    if type(ptr) is not int or ptr <= 0:
        raise ValueError(f"ptr must be a positive int device pointer, got {ptr!r}")
    name = dtype if isinstance(dtype, str) else dtype_name(dtype)
    shape = tuple(shape)
    if strides is None:
        strides = _contiguous_strides(shape, numpy_dtype(name).itemsize)
    if type(device_id) is not int or not 0 <= device_id < CUDA_MAX_DEVICES:
        raise ValueError(f"device_id must be an int in [0, {CUDA_MAX_DEVICES}), got {device_id!r}")
    drv = driver if driver is not None else cuda_driver()
    with core_errors("export", device_id=device_id):
        handle, offset, size = drv.ipc_export(device_id, ptr)
    ref = GPUTensorRef(handle, offset, shape, name, tuple(strides), device_id, size)
    ref.validate()
    return ref


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

    __slots__ = ("__weakref__", "_finalizer", "base", "ref")

    def __init__(self, ref: GPUTensorRef, driver: CudaDriver, base: int) -> None:
        self.ref = ref
        #: Base of the mapped allocation (what cuIpcOpenMemHandle returned).
        self.base = base
        self._finalizer = weakref.finalize(self, _close_mapping, driver, ref.device_id, base)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def ptr(self) -> int:
        """Device pointer of element ``[0, ..., 0]``."""
        if self.closed:
            raise DeviceError("the CUDA IPC tensor is closed", device=_device(self.ref.device_id))
        return self.base + self.ref.offset

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        ref = self.ref
        dtype = numpy_dtype(ref.dtype)
        contiguous = ref.strides == _contiguous_strides(ref.shape, dtype.itemsize)
        return {
            "shape": ref.shape,
            # numpy spells bfloat16 as a raw 2-byte type ("<V2").
            "typestr": dtype.str,
            "data": (self.ptr, False),
            "strides": None if contiguous else ref.strides,
            "version": 3,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(2, device_id)``: kDLCUDA."""
        return (DLPACK_CUDA, self.ref.device_id)

    def close(self) -> None:
        """Close the IPC mapping (idempotent); views of it become invalid."""
        if not self._finalizer.alive:
            return
        error = self._finalizer()
        if error is not None:
            raise core_error(error, "close", device_id=self.ref.device_id)

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
            f"device=cuda:{self.ref.device_id})"
        )


def open_cuda(ref: GPUTensorRef, driver: CudaDriver | None = None) -> CudaIPCTensor:
    """Open a GPUTensorRef exported by another process.

    The descriptor is validated first (InvalidDescriptorError); opening in the
    exporting process raises DeviceError (CUDA refuses it); without a driver,
    DeviceNotAvailableError. The returned tensor must be closed (or dropped)
    once consumers are done with it.
    """
    if not isinstance(ref, GPUTensorRef):
        raise TypeError(f"open_cuda() needs a GPUTensorRef, not {type(ref).__name__}")
    ref.validate()
    drv = driver if driver is not None else cuda_driver()
    with core_errors("open", device_id=ref.device_id):
        base, size = drv.ipc_open(ref.device_id, ref.handle)
    if size and size < ref.nbytes:
        error = _close_mapping(drv, ref.device_id, base)
        reason = (
            f"the descriptor claims an allocation of {ref.nbytes} bytes but the handle's "
            f"allocation has {size}"
        )
        if error is not None:
            reason += f" (and closing it failed: {error.detail or error})"
        raise InvalidDescriptorError(f"open GPUTensorRef failed: {reason}", reason=reason)
    return CudaIPCTensor(ref, drv, base)


__all__ = [
    "DEFAULT_DRIVER",
    "DRIVER_ENV",
    "CudaIPCTensor",
    "GPUTensorRef",
    "cuda_driver",
    "export_cuda",
    "open_cuda",
]
