"""CUDA tensors from DLPack producers, kept on the device (``snakepit.from_dlpack``).

:class:`CudaArray` takes the tensor out of a producer's capsule (torch, CuPy,
JAX or anything with ``__dlpack__`` on kDLCUDA) without importing the
producer's library, holds it (the producer's deleter runs when the last
holder is gone) and exposes it again as ``__dlpack__`` / ``__dlpack_device__``
and ``__cuda_array_interface__`` v3. ``ptr``, ``shape``, ``dtype``, ``strides``
(bytes) and ``device_id`` are what :func:`export_cuda` takes, so a carrier can
share it with another process.

The producer is asked for the versioned struct (``max_version=(1, 1)``) and
to order its work before the legacy default stream (``stream=None``); a
producer that knows no keyword arguments is asked plainly. Hand the memory to
another process only after synchronising (``export_cuda(..., synchronize=True)``).
"""

from __future__ import annotations

import math
from typing import Any

from snakepit._core import DLPACK_FLAG_READ_ONLY, CoreError, DLPackImport, Status

from . import _dlpack
from ._cuda import DLPACK_CUDA, cuda_driver, device_copier
from ._dtypes import c_strides, numpy_dtype


def _capsule_of(producer: Any) -> Any:
    try:
        return producer.__dlpack__(max_version=(1, 1), stream=None)
    except TypeError:
        # Producers older than DLPack 1.0 take no max_version (or no keywords).
        return producer.__dlpack__()


class CudaArray:
    """A CUDA tensor taken from a DLPack producer, on the device it was on (no copy).

    Attributes: ``ptr`` (element ``[0, ..., 0]``), ``shape``, ``dtype`` (a
    snakepit dtype name), ``strides`` (bytes), ``device_id`` (this process's
    ordinal) and ``readonly`` (the producer's READ_ONLY flag).
    """

    __slots__ = (
        "__weakref__",
        "_tensor",
        "device_id",
        "dtype",
        "ptr",
        "readonly",
        "shape",
        "strides",
    )

    def __init__(self, tensor: Any) -> None:
        # ``tensor`` is a DLPackImport (the Cython layer's; typed Any so that
        # the API reference names no internal class). Use from_dlpack().
        if not isinstance(tensor, DLPackImport):
            raise TypeError("CudaArray() takes a DLPackImport; use CudaArray.from_dlpack(obj)")
        device_type, device_id = tensor.device
        if device_type != DLPACK_CUDA:
            raise BufferError(f"not a CUDA tensor: DLPack device {tensor.device}")
        code, bits, lanes = tensor.dtype
        self.dtype = _dlpack.dtype_of(code, bits, lanes)
        itemsize = numpy_dtype(self.dtype).itemsize
        shape = tensor.shape
        if tensor.strides is None:
            self.strides = c_strides(shape, itemsize)
        else:
            self.strides = tuple(s * itemsize for s in tensor.strides)
        self._tensor = tensor
        self.ptr = tensor.data
        self.shape = shape
        self.device_id = device_id
        self.readonly = bool(tensor.flags & DLPACK_FLAG_READ_ONLY)

    @classmethod
    def from_dlpack(cls, producer: Any) -> CudaArray:
        """Take ``producer``'s CUDA tensor (BufferError if it is not one, or not DLPack)."""
        capsule = _capsule_of(producer)
        try:
            tensor = DLPackImport.from_capsule(capsule)
        except CoreError as exc:
            if exc.status == Status.VERSION:
                raise BufferError("the producer's DLPack major version is newer than 1") from None
            raise BufferError(
                f"{type(producer).__name__}.__dlpack__ gave no DLPack capsule"
            ) from None
        return cls(tensor)

    @property
    def nbytes(self) -> int:
        return numpy_dtype(self.dtype).itemsize * math.prod(self.shape)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        dtype = numpy_dtype(self.dtype)
        return {
            "shape": self.shape,
            "typestr": dtype.str,
            "data": (self.ptr, self.readonly),
            "strides": self.strides,
            "version": 3,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(2, device_id)``: kDLCUDA."""
        return (DLPACK_CUDA, self.device_id)

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A capsule over the same device memory (``copy=True``: a private device copy).

        The capsule keeps this array, and so the producer's tensor, alive
        until its consumer deletes it. Rules as in ``_dlpack``.
        """
        return _dlpack.device_capsule(
            self,
            self.ptr,
            self.device_id,
            self.shape,
            self.dtype,
            self.strides,
            readonly=self.readonly,
            copier=device_copier(
                cuda_driver, self.device_id, self.ptr, self.shape, self.dtype, self.strides
            ),
            stream=stream,
            max_version=max_version,
            dl_device=dl_device,
            copy=copy,
        )

    def __repr__(self) -> str:
        return (
            f"CudaArray(ptr=0x{self.ptr:x}, shape={self.shape}, dtype={self.dtype}, "
            f"device=cuda:{self.device_id})"
        )


def is_cuda_producer(obj: object) -> bool:
    """Whether ``obj`` is a DLPack producer whose tensor lives on a CUDA device (kDLCUDA)."""
    device = getattr(obj, "__dlpack_device__", None)
    if not callable(device) or not callable(getattr(obj, "__dlpack__", None)):
        return False
    try:
        kind = device()[0]
    except (TypeError, IndexError, ValueError):
        return False
    return bool(kind == DLPACK_CUDA)


__all__ = ["CudaArray", "is_cuda_producer"]
