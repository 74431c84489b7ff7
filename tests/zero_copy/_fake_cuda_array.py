"""TEST DOUBLE of a CUDA array library, over the fake driver's memory.

:class:`FakeCudaArray` is not CUDA: its "device memory" is host shared
memory carved out by ``csrc/tests/fake_cuda.c`` (``fakecuMemAlloc``), so a
test can read and write it with ctypes. It exposes what a CUDA array library
exposes, ``__cuda_array_interface__`` (v3) and ``__dlpack_device__``
(kDLCUDA), so the codec's CUDA carrier takes it as it takes a torch or CuPy
CUDA tensor. The functions below run in workers (the fake driver is loaded
there through ``SNAKEPIT_CUDA_DRIVER``, which they inherit).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
from typing import Any

import numpy as np

from snakepit.zero_copy import _cuda_leases
from snakepit.zero_copy._cuda import DRIVER_ENV

#: Kept by :func:`keep` past its call (as user code keeps a model's weights).
KEPT: list[Any] = []


def library() -> ctypes.CDLL:
    """The fake driver this process loaded (the one SNAKEPIT_CUDA_DRIVER names)."""
    return ctypes.CDLL(os.environ[DRIVER_ENV])


class FakeCudaArray:
    """TEST DOUBLE: a C-contiguous CUDA array on the fake driver's memory."""

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: str = "float32",
        device: int = 0,
        *,
        within: FakeCudaArray | None = None,
        offset: int = 0,
    ) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        #: A view of another array's allocation (interior pointer) holds it.
        self.within = within
        if within is not None:
            self.ptr = within.ptr + offset
            return
        ptr = ctypes.c_uint64()
        if library().fakecuMemAlloc(ctypes.byref(ptr), ctypes.c_size_t(self.nbytes)) != 0:
            raise MemoryError("the fake driver's segment is full")
        self.ptr = ptr.value

    def part(self, start: int, count: int) -> FakeCudaArray:
        """Elements ``[start, start + count)``: a view inside this allocation."""
        return FakeCudaArray(
            (count,), self.dtype.str, self.device, within=self, offset=start * self.dtype.itemsize
        )

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self.device)

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise BufferError("test double: read it through __cuda_array_interface__")

    def __reduce__(self) -> Any:
        # As a GPU library pickles: copy to the host, allocate anew on load.
        return (_from_host, (self.host().tobytes(), self.dtype.str, self.shape, self.device))

    def host(self) -> np.ndarray[Any, Any]:
        """The memory as a numpy array (the double's device memory is host memory)."""
        return host_view(self)

    def __del__(self) -> None:
        if self.within is None:
            library().fakecuMemFree(ctypes.c_uint64(self.ptr))


def host_view(obj: Any) -> np.ndarray[Any, Any]:
    """A numpy view of any object's ``__cuda_array_interface__`` on the double."""
    cai = obj.__cuda_array_interface__
    dtype = np.dtype(cai["typestr"])
    count = int(np.prod(cai["shape"]))
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(cai["data"][0])
    flat = np.frombuffer(raw, dtype=dtype)
    if cai.get("strides") is None:
        return flat.reshape(cai["shape"])
    return np.lib.stride_tricks.as_strided(flat, cai["shape"], cai["strides"])


def _from_host(data: bytes, dtype: str, shape: tuple[int, ...], device: int) -> FakeCudaArray:
    array = FakeCudaArray(shape, dtype, device)
    array.host()[...] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array


def filled(count: int, start: float = 0.0) -> FakeCudaArray:
    """A float32 double holding ``start, start + 1, ...``."""
    array = FakeCudaArray((count,))
    array.host()[:] = np.arange(count, dtype=np.float32) + start
    return array


# ------------------------------------------------------------ worker tasks


def describe(x: Any) -> tuple[str, float, tuple[int, int], int]:
    """(type, sum of values, DLPack device, this process's open allocations)."""
    return (
        f"{type(x).__module__}.{type(x).__qualname__}",
        float(host_view(x).sum()),
        tuple(x.__dlpack_device__()),
        _cuda_leases.open_count(),
    )


def negate(x: Any) -> None:
    """Write in place: the caller must see it."""
    view = host_view(x)
    view *= -1


def twice(x: Any, y: Any) -> tuple[int, int]:
    """(open allocations, handles opened so far) with ``x`` and ``y`` both open."""
    return _cuda_leases.open_count(), _cuda_leases.opens_total()


def keep(x: Any) -> int:
    """Keep ``x`` past the call."""
    KEPT.append(x)
    return len(KEPT)


def drop() -> int:
    """Let kept arrays go; the open mappings left."""
    KEPT.clear()
    gc.collect()
    return int(library().fakecuOpenCount())


def open_mappings() -> int:
    """Open IPC mappings in this process (the double counts every open)."""
    gc.collect()
    return int(library().fakecuOpenCount())


def make(count: int, start: float) -> FakeCudaArray:
    """A result on the worker's "device"."""
    return filled(count, start)


def outstanding() -> int:
    """This process's exports still held by someone."""
    _cuda_leases.sweep()
    return _cuda_leases.outstanding()


def crash(x: Any) -> None:
    """Die while holding ``x`` open."""
    KEPT.append(x)
    os.kill(os.getpid(), signal.SIGKILL)


def make_many(count: int, length: int) -> list[FakeCudaArray]:
    """``count`` results, each an allocation of its own."""
    return [filled(length, float(i)) for i in range(count)]


def reset() -> None:
    """Start a new fake segment (a new "device"): later allocations get new handles."""
    library().fakecuReset()
