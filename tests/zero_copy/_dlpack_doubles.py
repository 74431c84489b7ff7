"""Test doubles of the two sides of DLPack, in ctypes: a consumer and a CUDA producer.

:class:`Consumer` does what a library's ``from_dlpack`` does with a capsule
(reads the struct, renames the capsule ``used_*``, calls the deleter when it
is done), so exports can be checked field by field without torch or CuPy.
:class:`CudaProducer` hands out kDLCUDA capsules over the driver double's
memory, as a CUDA tensor library would.
"""

from __future__ import annotations

import ctypes
import weakref
from typing import Any

from snakepit._core import owned_dlpack
from snakepit.zero_copy._dlpack import DL_DTYPES

READ_ONLY = 1
IS_COPIED = 2


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


# The layouts FACTS.md gives (LP64).
assert ctypes.sizeof(DLTensor) == 48
assert ctypes.sizeof(DLManagedTensor) == 64
assert ctypes.sizeof(DLManagedTensorVersioned) == 80
assert DLManagedTensorVersioned.dl_tensor.offset == 32

_api = ctypes.pythonapi
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
# PyCapsule_SetName keeps the pointer: the names must outlive the capsules.
_USED = {
    b"dltensor": ctypes.create_string_buffer(b"used_dltensor"),
    b"dltensor_versioned": ctypes.create_string_buffer(b"used_dltensor_versioned"),
}
# A plain C function pointer: ctypes releases the GIL while it runs, as a
# consumer on another thread would.
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class Consumer:
    """Takes one capsule from ``producer.__dlpack__(**kwargs)`` and owns its tensor."""

    def __init__(self, producer: Any, **kwargs: Any) -> None:
        capsule = producer.__dlpack__(**kwargs)
        self.name = _api.PyCapsule_GetName(capsule)
        assert self.name in _USED, self.name
        self._ptr = _api.PyCapsule_GetPointer(capsule, self.name)
        assert _api.PyCapsule_SetName(capsule, _USED[self.name]) == 0
        self.versioned = self.name == b"dltensor_versioned"
        if self.versioned:
            managed = DLManagedTensorVersioned.from_address(self._ptr)
            self.flags = int(managed.flags)
            self.version = (int(managed.version.major), int(managed.version.minor))
        else:
            legacy = DLManagedTensor.from_address(self._ptr)
            self.flags = 0
            self.version = (0, 0)
        self._managed: Any = managed if self.versioned else legacy
        t = self._managed.dl_tensor
        self.data = int(t.data or 0) + int(t.byte_offset)
        self.device = (int(t.device.device_type), int(t.device.device_id))
        self.shape = tuple(t.shape[i] for i in range(t.ndim))
        self.strides = None if not t.strides else tuple(t.strides[i] for i in range(t.ndim))
        self.dtype = (int(t.dtype.code), int(t.dtype.bits), int(t.dtype.lanes))
        self.released = False

    def release(self) -> None:
        """Call the producer's deleter, once."""
        if not self.released:
            self.released = True
            _DELETER(self._managed.deleter)(self._ptr)


class _Owner:
    """What a capsule of :class:`CudaProducer` keeps alive (its liveness is observable)."""


class CudaProducer:
    """A CUDA tensor library's array over the double's memory (no torch, no CuPy).

    ``calls`` records the keyword arguments of each ``__dlpack__``;
    ``owners`` are weak references to what each capsule keeps alive, dead
    once the consumer has called the deleter. ``legacy_only`` makes it a
    producer older than DLPack 1.0 (no keyword arguments).
    """

    def __init__(
        self,
        ptr: int,
        shape: tuple[int, ...],
        dtype: str,
        strides: tuple[int, ...] | None = None,
        device_id: int = 0,
        *,
        readonly: bool = False,
        legacy_only: bool = False,
    ) -> None:
        self.ptr, self.shape, self.dtype, self.device_id = ptr, shape, dtype, device_id
        self.strides = strides  # in elements
        self.readonly = readonly
        self.legacy_only = legacy_only
        self.calls: list[dict[str, Any]] = []
        self.owners: list[weakref.ref[_Owner]] = []

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self.device_id)

    def __dlpack__(self, **kwargs: Any) -> Any:
        if self.legacy_only and kwargs:
            raise TypeError("__dlpack__() takes no keyword arguments")
        self.calls.append(kwargs)
        max_version = kwargs.get("max_version")
        versioned = max_version is not None and max_version[0] >= 1
        code, bits = DL_DTYPES[self.dtype]
        strides = self.strides
        if strides is None:
            strides, step = (), 1
            for dim in reversed(self.shape):
                strides = (step, *strides)
                step *= max(dim, 1)
        owner = _Owner()
        self.owners.append(weakref.ref(owner))
        return owned_dlpack(
            owner,
            self.ptr,
            2,
            self.device_id,
            self.shape,
            strides,
            code,
            bits,
            versioned,
            self.readonly and versioned,
            False,
        )

    @property
    def alive(self) -> int:
        """Capsules whose tensor has not been deleted yet."""
        return sum(ref() is not None for ref in self.owners)
