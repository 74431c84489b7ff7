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

from ._cuda_double import alloc, load

#: Kept by :func:`keep` past its call (as user code keeps a model's weights).
KEPT: list[Any] = []


_library: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The fake driver this process loaded (the one SNAKEPIT_CUDA_DRIVER names)."""
    global _library
    if _library is None:
        _library = load(os.environ[DRIVER_ENV])
    return _library


def _set_device(lib: ctypes.CDLL, ordinal: int) -> ctypes.c_void_p:
    """Make ``ordinal``'s primary context current (as a library does); the previous one."""
    previous, context, device = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_int()
    assert lib.cuInit(0) == 0
    assert lib.cuCtxGetCurrent(ctypes.byref(previous)) == 0
    assert lib.cuDeviceGet(ctypes.byref(device), ordinal) == 0
    assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device) == 0
    assert lib.cuCtxSetCurrent(context) == 0
    return previous


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
        kind: str = "device",
    ) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        #: A view of another array's allocation (interior pointer) holds it.
        self.within = within
        #: The stream whose queued work produces the data (CAI v3 "stream").
        self.stream: int | None = None
        if within is not None:
            self.ptr = within.ptr + offset
            return
        lib = library()
        previous = _set_device(lib, device)
        try:
            self.ptr = alloc(lib, self.nbytes, kind)
        finally:
            lib.cuCtxSetCurrent(previous)

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
            "stream": self.stream,
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


def identity(x: Any) -> Any:
    """Send the argument back."""
    return x


class Slice:
    """TEST DOUBLE: elements ``[start:]`` of a CUDA array (an interior view)."""

    def __init__(self, base: Any, start: int) -> None:
        self.base = base
        cai = base.__cuda_array_interface__
        self.dtype = np.dtype(cai["typestr"])
        self.ptr = cai["data"][0] + start * self.dtype.itemsize
        self.shape = (cai["shape"][0] - start,)
        self.device = base.__dlpack_device__()[1]

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


def tail(x: Any, start: int) -> Slice:
    """Send back a view of the argument."""
    return Slice(x, start)


def opened(*xs: Any) -> int:
    """This process's open allocations while ``xs`` are open."""
    return _cuda_leases.open_count()


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


def die() -> None:
    """Die (holding whatever earlier calls kept)."""
    os.kill(os.getpid(), signal.SIGKILL)


def crash(x: Any) -> None:
    """Die while holding ``x`` open."""
    KEPT.append(x)
    os.kill(os.getpid(), signal.SIGKILL)


def queue_fill(array: Any, value: int, stream: int) -> None:
    """Queue a fill of ``array``'s bytes on ``stream``: it lands when that
    stream or the context is synchronised (work a kernel left pending)."""
    cai = array.__cuda_array_interface__
    nbytes = int(np.prod(cai["shape"])) * np.dtype(cai["typestr"]).itemsize
    assert library().fakecuQueueFill(ctypes.c_void_p(stream), cai["data"][0], value, nbytes) == 0


def fill_pending(x: Any, value: int) -> None:
    """Write into an argument asynchronously (as a kernel would), and return at once."""
    queue_fill(x, value, 7)


def set_max_opens(count: int) -> None:
    """How many distinct handles this process may have open (the double's table)."""
    library().fakecuSetMaxOpens(count)
