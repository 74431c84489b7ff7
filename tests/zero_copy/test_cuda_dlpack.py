"""DLPack on CUDA memory, on the driver double: from_dlpack keeps CUDA tensors on the
device, and every export (CudaIPCTensor, GPUTensorRef, CudaArray, TensorRef) honours
``max_version``, ``dl_device``, ``copy`` and the read-only flag.

CUDA consumers and producers are the ctypes doubles of ``_dlpack_doubles``;
CPU exports are checked with numpy's own ``from_dlpack``.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import DeviceError
from snakepit.zero_copy import CudaArray, export_cuda, memory_kind
from snakepit.zero_copy._cuda import DRIVER_ENV

from ._cuda_double import alloc, build_fake, load, run_child
from ._dlpack_doubles import IS_COPIED, READ_ONLY, Consumer, CudaProducer, DLManagedTensorVersioned


@pytest.fixture(scope="module")
def fake_path() -> str:
    return build_fake()


@pytest.fixture
def fake(fake_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ctypes.CDLL]:
    monkeypatch.setenv(DRIVER_ENV, fake_path)
    lib = load(fake_path)
    yield lib
    gc.collect()
    assert lib.fakecuOpenCount() == 0
    lib.fakecuReset()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fakecuda-{os.getpid()}-")]


# ------------------------------------------------------------ from_dlpack of CUDA


def test_from_dlpack_keeps_a_cuda_tensor_on_the_device(fake: ctypes.CDLL) -> None:
    ptr = alloc(fake, 4096)
    producer = CudaProducer(ptr + 64, (4, 8), "float32", device_id=1)
    array = snakepit.from_dlpack(producer)
    assert isinstance(array, CudaArray)
    assert producer.calls == [{"max_version": (1, 1), "stream": None}]
    assert (array.ptr, array.shape, array.dtype, array.device_id) == (
        ptr + 64,
        (4, 8),
        "float32",
        1,
    )
    assert array.strides == (32, 4)
    assert array.nbytes == 128
    assert not array.readonly
    assert array.__dlpack_device__() == (2, 1)
    assert array.__cuda_array_interface__ == {
        "shape": (4, 8),
        "typestr": "<f4",
        "data": (ptr + 64, False),
        "strides": (32, 4),
        "version": 3,
    }
    # The producer's tensor lives as long as the array (and its re-exports).
    assert producer.alive == 1
    consumer = Consumer(array, max_version=(1, 0))
    assert consumer.data == ptr + 64
    assert consumer.device == (2, 1)
    assert consumer.strides == (8, 1)
    del array
    gc.collect()
    assert producer.alive == 1
    consumer.release()
    gc.collect()
    assert producer.alive == 0


def test_from_dlpack_of_a_strided_read_only_producer(fake: ctypes.CDLL) -> None:
    ptr = alloc(fake, 4096)
    producer = CudaProducer(ptr, (3, 2), "int16", strides=(4, 2), readonly=True)
    array = snakepit.from_dlpack(producer)
    assert isinstance(array, CudaArray)
    assert array.strides == (8, 4)
    assert array.readonly
    assert array.__cuda_array_interface__["data"] == (ptr, True)
    assert Consumer(array, max_version=(1, 1)).flags & READ_ONLY
    with pytest.raises(BufferError, match="read-only"):
        array.__dlpack__()  # legacy: it could not say read-only


def test_from_dlpack_of_a_legacy_producer(fake: ctypes.CDLL) -> None:
    producer = CudaProducer(alloc(fake, 256), (16,), "uint8", legacy_only=True)
    array = snakepit.from_dlpack(producer)
    assert isinstance(array, CudaArray)
    assert producer.calls == [{}]
    assert array.shape == (16,)


def test_from_dlpack_refuses_a_newer_major_version(fake: ctypes.CDLL) -> None:
    producer = CudaProducer(alloc(fake, 256), (16,), "uint8")

    class Newer:
        def __dlpack_device__(self) -> tuple[int, int]:
            return (2, 0)

        def __dlpack__(self, **kwargs: Any) -> Any:
            capsule = producer.__dlpack__(**kwargs)
            ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
            ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
            ptr = ctypes.pythonapi.PyCapsule_GetPointer(capsule, b"dltensor_versioned")
            DLManagedTensorVersioned.from_address(ptr).version.major = 2
            return capsule

    with pytest.raises(BufferError, match="newer"):
        snakepit.from_dlpack(Newer())
    gc.collect()
    assert producer.alive == 0  # unconsumed: the capsule deleted it


def test_from_dlpack_refuses_unknown_dtypes_and_lanes(fake: ctypes.CDLL) -> None:
    producer = CudaProducer(alloc(fake, 256), (16,), "uint8")
    original = producer.__dlpack__

    def two_lanes(**kwargs: Any) -> Any:
        capsule = original(**kwargs)
        ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
        ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        ptr = ctypes.pythonapi.PyCapsule_GetPointer(capsule, b"dltensor_versioned")
        DLManagedTensorVersioned.from_address(ptr).dl_tensor.dtype.lanes = 2
        return capsule

    producer.__dlpack__ = two_lanes  # type: ignore[method-assign]
    with pytest.raises(BufferError, match="2 lanes"):
        snakepit.from_dlpack(producer)
    gc.collect()
    assert producer.alive == 0  # consumed, then deleted with the refusal


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"dl_device": (2, 1)}, "cannot export"),
        ({"dl_device": (1, 0)}, "cannot export"),
        ({"stream": 0}, "ambiguous"),
        ({"stream": "s"}, "stream"),
    ],
)
def test_cuda_array_export_refusals(fake: ctypes.CDLL, kwargs: dict[str, Any], needle: str) -> None:
    array = snakepit.from_dlpack(CudaProducer(alloc(fake, 256), (16,), "uint8"))
    with pytest.raises(BufferError, match=needle):
        array.__dlpack__(**kwargs)


def test_cuda_array_export_options(fake: ctypes.CDLL) -> None:
    ptr = alloc(fake, 256, "pool")
    ctypes.memmove(ptr, bytes(range(64)), 64)
    array = snakepit.from_dlpack(CudaProducer(ptr, (64,), "uint8"))
    assert isinstance(array, CudaArray)
    legacy = Consumer(array)
    assert (legacy.name, legacy.flags) == (b"dltensor", 0)
    same = Consumer(array, max_version=(1, 0), copy=False, stream=-1, dl_device=(2, 0))
    assert same.data == ptr
    assert same.flags == 0
    # copy=True: a private device copy (IS_COPIED), shareable memory, same bytes.
    copied = Consumer(array, max_version=(1, 0), copy=True)
    assert copied.flags == IS_COPIED
    assert copied.data != ptr
    assert memory_kind(copied.data) == "device"
    assert ctypes.string_at(copied.data, 64) == bytes(range(64))
    copied_ptr = copied.data
    copied.release()
    with pytest.raises(DeviceError):  # the copy was freed with the consumer's tensor
        memory_kind(copied_ptr)
    for consumer in (legacy, same):
        consumer.release()


def test_from_dlpack_still_copies_host_producers_into_shared_memory() -> None:
    shared = snakepit.from_dlpack(np.arange(6, dtype=np.int32))
    assert isinstance(shared, np.ndarray)
    assert snakepit.is_shared(shared)


# ------------------------------------------------------------ TensorRef (CPU) exports


def test_tensor_ref_copy_true_is_a_private_copy() -> None:
    array = snakepit.zeros((3, 4), "float32")
    ref = snakepit.ref_of(array)
    before = zero_copy.block_refcount(ref)
    copied = np.from_dlpack(ref, copy=True)
    array[0, 0] = 5.0
    assert copied[0, 0] == 0.0
    assert copied.flags.writeable
    consumer = Consumer(ref, max_version=(1, 0), copy=True)
    assert consumer.flags == IS_COPIED
    assert consumer.strides == (4, 1)
    ctypes.c_float.from_address(consumer.data).value = 9.0
    assert array[0, 0] == 5.0
    legacy = Consumer(ref, copy=True)
    assert legacy.name == b"dltensor"
    for c in (consumer, legacy):
        c.release()
    del copied
    gc.collect()
    assert zero_copy.block_refcount(ref) == before  # the copies hold no block reference


def test_tensor_ref_copy_false_and_none_never_copy() -> None:
    array = snakepit.zeros((8,), "float64")
    ref = snakepit.ref_of(array)
    for copy in (False, None):
        view = np.from_dlpack(ref, copy=copy)
        view[1] = 2.0
        assert array[1] == 2.0
        consumer = Consumer(ref, max_version=(1, 0), copy=copy)
        try:
            # Its own mapping of the same block: a write shows in the array.
            ctypes.c_double.from_address(consumer.data + 8 * 3).value = 7.0
            assert array[3] == 7.0
            assert consumer.flags == 0
        finally:
            consumer.release()


@pytest.mark.parametrize(
    "kwargs", [{"copy": True, "dl_device": (2, 0)}, {"copy": True, "stream": 1}]
)
def test_tensor_ref_copy_keeps_the_other_refusals(kwargs: dict[str, Any]) -> None:
    ref = snakepit.ref_of(snakepit.zeros((3,), "float32"))
    with pytest.raises(BufferError):
        ref.__dlpack__(**kwargs)


# ------------------------------------------------------------ opened IPC tensors

# In a process other than the exporter: every export option of CudaIPCTensor and
# GPUTensorRef, checked with the consumer double; neither torch nor CuPy loaded.
_CHILD = """
import ctypes, gc, pickle, sys
import snakepit
from snakepit.zero_copy import CudaArray, memory_kind, open_cuda
from tests.zero_copy._dlpack_doubles import IS_COPIED, READ_ONLY, Consumer

lib = ctypes.CDLL(sys.argv[2])
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
tensor = open_cuda(ref)
assert tensor.__dlpack_device__() == (2, 1), tensor.__dlpack_device__()
legacy = Consumer(tensor)
assert legacy.name == b"dltensor" and legacy.data == tensor.ptr
assert legacy.device == (2, 1) and legacy.shape == (4, 4) and legacy.strides == (4, 1)
assert legacy.dtype == (2, 32, 1)
versioned = Consumer(tensor, max_version=(1, 1), dl_device=(2, 1), copy=False, stream=7)
assert versioned.name == b"dltensor_versioned" and versioned.version == (1, 1)
assert versioned.flags == 0 and versioned.data == tensor.ptr
for bad in ({"dl_device": (2, 0)}, {"dl_device": (1, 0)}, {"stream": 0}):
    try:
        tensor.__dlpack__(**bad)
    except BufferError:
        pass
    else:
        raise AssertionError(bad)
copied = Consumer(tensor, max_version=(1, 0), copy=True)
assert copied.flags == IS_COPIED and copied.data != tensor.ptr
assert ctypes.string_at(copied.data, 64) == ctypes.string_at(tensor.ptr, 64)
assert memory_kind(copied.data) == "device"
copied.release()
# The capsules keep the mapping open after the tensor object is gone.
del tensor
gc.collect()
assert lib.fakecuOpenCount() == 1, lib.fakecuOpenCount()
legacy.release()
versioned.release()
gc.collect()
assert lib.fakecuOpenCount() == 0, lib.fakecuOpenCount()

# Read-only opens say so; the legacy struct cannot, so it is refused.
with open_cuda(ref, readonly=True) as ro:
    assert ro.__cuda_array_interface__["data"][1] is True
    c = Consumer(ro, max_version=(1, 0))
    assert c.flags == READ_ONLY
    c.release()
    try:
        ro.__dlpack__()
    except BufferError:
        pass
    else:
        raise AssertionError("legacy read-only export")

# A GPUTensorRef is a producer too, and from_dlpack keeps it on the device.
assert ref.__dlpack_device__() == (2, 1)
c = Consumer(ref, max_version=(1, 0))
assert c.device == (2, 1) and lib.fakecuOpenCount() == 1
c.release()
gc.collect()
arr = snakepit.from_dlpack(ref)
assert isinstance(arr, CudaArray) and arr.device_id == 1 and arr.shape == (4, 4)
del arr
gc.collect()
assert lib.fakecuOpenCount() == 0, lib.fakecuOpenCount()
assert not {"torch", "cupy", "jax"} & set(sys.modules), sorted(sys.modules)
print("ok")
"""


def test_opened_ipc_tensors_export_by_dlpack(fake: ctypes.CDLL, fake_path: str) -> None:
    ptr = alloc(fake, 4096)
    ref = export_cuda(ptr + 256, (4, 4), "float32")
    # The child numbers the exporter's cuda:0 as cuda:1.
    result = run_child(
        _CHILD,
        pickle.dumps(ref).hex(),
        fake_path,
        fake_path=fake_path,
        env={"CUDA_VISIBLE_DEVICES": "1,0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
