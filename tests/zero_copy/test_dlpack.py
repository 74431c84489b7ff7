"""TensorRef speaks DLPack: numpy and torch consume it without copying."""

from __future__ import annotations

import ctypes
import dataclasses
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import InvalidDescriptorError, SnakepitError
from snakepit.zero_copy import BFLOAT16, SUPPORTED_DTYPES, block_refcount
from snakepit.zero_copy._dlpack import DL_DTYPES
from snakepit.zero_copy._ref import dlpack_capsule

_api = ctypes.pythonapi
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# PyCapsule_SetName keeps the pointer: the name must outlive the capsule.
_USED_VERSIONED = ctypes.create_string_buffer(b"used_dltensor_versioned")


@pytest.fixture(autouse=True)
def _reclaim_after() -> Iterator[None]:
    """Consumers may outlive the array they view: once both are gone, give
    their blocks back so later tests see an arena without deferred blocks."""
    yield
    gc.collect()
    zero_copy.reclaim()


class _Producer:
    """Hands out a prepared capsule (to feed consumers a read-only export)."""

    def __init__(self, capsule: Any) -> None:
        self.capsule = capsule

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def _filled(shape: tuple[int, ...], dtype: str) -> np.ndarray[Any, Any]:
    array = snakepit.empty(shape, dtype)
    raw = array.reshape(-1).view(np.uint8)
    raw[:] = np.arange(raw.size, dtype=np.uint64).astype(np.uint8) % 97
    if dtype == "bool":
        array.view(np.uint8)[...] = np.arange(array.size).reshape(shape) % 2
    return array


def _torch() -> Any:
    return pytest.importorskip("torch")


def test_dlpack_device_is_the_cpu() -> None:
    array = snakepit.zeros((2, 3), "float32")
    assert snakepit.ref_of(array).__dlpack_device__() == (1, 0)


def test_every_dtype_has_a_dlpack_type() -> None:
    assert set(DL_DTYPES) == set(SUPPORTED_DTYPES)
    assert DL_DTYPES["bfloat16"] == (4, 16)
    assert DL_DTYPES["bool"] == (6, 8)
    assert DL_DTYPES["complex128"] == (5, 128)


@pytest.mark.parametrize("dtype", [d for d in SUPPORTED_DTYPES if d != "bfloat16"])
def test_numpy_round_trip(dtype: str) -> None:
    array = _filled((3, 5), dtype)
    ref = snakepit.ref_of(array)
    view = np.from_dlpack(ref)
    assert view.dtype == array.dtype
    assert view.shape == array.shape
    np.testing.assert_array_equal(view, array)
    assert view.flags.writeable


def test_numpy_refuses_bfloat16_cleanly() -> None:
    array = snakepit.zeros((4,), "bfloat16")
    with pytest.raises((RuntimeError, BufferError, TypeError)):
        np.from_dlpack(snakepit.ref_of(array))
    gc.collect()
    assert block_refcount(snakepit.ref_of(array)) == 1


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_torch_round_trip(dtype: str) -> None:
    torch = _torch()
    array = _filled((3, 5), dtype)
    tensor = torch.from_dlpack(snakepit.ref_of(array))
    assert tuple(tensor.shape) == (3, 5)
    if dtype == "bfloat16":
        assert tensor.dtype == torch.bfloat16
        np.testing.assert_array_equal(tensor.view(torch.int16).numpy(), array.view(np.int16))
    else:
        assert str(tensor.dtype) == f"torch.{dtype}"
        np.testing.assert_array_equal(tensor.numpy(), array)


def test_torch_writes_are_visible_and_the_block_is_held() -> None:
    torch = _torch()
    array = snakepit.zeros((4, 4), "float32")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    tensor = torch.from_dlpack(ref)
    assert block_refcount(ref) == before + 1
    tensor[1, 2] = 42.0
    tensor[3] += 1.0
    assert array[1, 2] == 42.0
    assert array[3].tolist() == [1.0] * 4
    del tensor
    gc.collect()
    assert block_refcount(ref) == before


def test_numpy_consumer_holds_the_block_until_it_dies() -> None:
    array = snakepit.zeros((8,), "int64")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    view = np.from_dlpack(ref)
    view2 = view[2:]
    del view
    assert block_refcount(ref) == before + 1
    view2[0] = 7
    assert array[2] == 7
    del view2
    gc.collect()
    assert block_refcount(ref) == before


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: a[::2, 1::3],
        lambda a: a.T,
        lambda a: a[1:, ::2].T,
        lambda a: a[:, 2],
        lambda a: a[None, 1:3, :, None],
    ],
    ids=["steps", "transpose", "slice-transpose", "column", "newaxis"],
)
def test_non_contiguous_views_keep_their_strides(make_view: Any) -> None:
    array = snakepit.empty((6, 8), "float64")
    array[...] = np.arange(48).reshape(6, 8)
    view = make_view(array)
    ref = snakepit.ref_of(view)
    got = np.from_dlpack(ref)
    np.testing.assert_array_equal(got, view)
    assert got.strides == view.strides
    torch = pytest.importorskip("torch")
    tensor = torch.from_dlpack(ref)
    assert tensor.stride() == tuple(s // 8 for s in view.strides)
    np.testing.assert_array_equal(tensor.numpy(), view)


def test_negative_strides_are_refused() -> None:
    array = snakepit.zeros((4, 6), "float32")
    with pytest.raises(BufferError, match="negative strides"):
        snakepit.ref_of(array[:, ::-1]).__dlpack__(max_version=(1, 0))


@pytest.mark.parametrize(
    ("max_version", "name"),
    [
        (None, b"dltensor"),
        ((0, 8), b"dltensor"),
        ((1, 0), b"dltensor_versioned"),
        ((1, 1), b"dltensor_versioned"),
        ((2, 0), b"dltensor_versioned"),
    ],
)
def test_capsule_names(max_version: tuple[int, int] | None, name: bytes) -> None:
    array = snakepit.zeros((3,), "int32")
    ref = snakepit.ref_of(array)
    capsule = ref.__dlpack__(max_version=max_version)
    assert _api.PyCapsule_GetName(capsule) == name
    assert _api.PyCapsule_IsValid(capsule, name) == 1
    if name == b"dltensor_versioned":
        pointer = _api.PyCapsule_GetPointer(capsule, name)
        major, minor = (ctypes.c_uint32 * 2).from_address(pointer)
        assert (major, minor) == (1, 1)
        assert ctypes.c_uint64.from_address(pointer + 24).value == 0  # flags


def test_unconsumed_capsule_drops_its_reference() -> None:
    array = snakepit.zeros((3,), "int32")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    for version in (None, (1, 0)):
        capsule = ref.__dlpack__(max_version=version)
        assert block_refcount(ref) == before + 1
        del capsule
        gc.collect()
        assert block_refcount(ref) == before


def test_renamed_capsule_belongs_to_the_consumer() -> None:
    array = snakepit.zeros((3,), "int32")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    capsule = ref.__dlpack__(max_version=(1, 0))
    pointer = _api.PyCapsule_GetPointer(capsule, b"dltensor_versioned")
    assert _api.PyCapsule_SetName(capsule, _USED_VERSIONED) == 0
    del capsule
    gc.collect()
    # The consumer took ownership: the capsule's death must not delete.
    assert block_refcount(ref) == before + 1
    deleter = ctypes.c_void_p.from_address(pointer + 16).value
    _DELETER(deleter)(pointer)
    assert block_refcount(ref) == before


def test_read_only_flag_reaches_numpy() -> None:
    array = snakepit.zeros((2, 2), "float32")
    ref = snakepit.ref_of(array)
    capsule = dlpack_capsule(ref, max_version=(1, 0), readonly=True)
    pointer = _api.PyCapsule_GetPointer(capsule, b"dltensor_versioned")
    assert ctypes.c_uint64.from_address(pointer + 24).value == 1  # READ_ONLY
    view = np.from_dlpack(_Producer(capsule))
    assert not view.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0
    with pytest.raises(BufferError, match="legacy"):
        dlpack_capsule(ref, max_version=None, readonly=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream": 1},
        {"stream": 0},
        {"dl_device": (2, 0)},
        {"dl_device": (1, 1)},
        {"copy": True, "stream": 1},
    ],
)
def test_protocol_refusals_are_buffer_errors(kwargs: dict[str, Any]) -> None:
    array = snakepit.zeros((3,), "float32")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    with pytest.raises(BufferError):
        ref.__dlpack__(**kwargs)
    assert block_refcount(ref) == before


def test_accepted_protocol_arguments() -> None:
    array = snakepit.zeros((3,), "float32")
    ref = snakepit.ref_of(array)
    capsule = ref.__dlpack__(stream=None, max_version=(1, 0), dl_device=(1, 0), copy=False)
    assert _api.PyCapsule_IsValid(capsule, b"dltensor_versioned") == 1
    np.testing.assert_array_equal(np.from_dlpack(ref, copy=False), array)
    np.testing.assert_array_equal(np.from_dlpack(ref, device="cpu"), array)


def test_bad_descriptors_raise_snakepit_errors() -> None:
    array = snakepit.zeros((4, 4), "float32")
    ref = snakepit.ref_of(array)
    before = block_refcount(ref)
    too_big = dataclasses.replace(ref, shape=(8, 4))
    with pytest.raises(InvalidDescriptorError):
        too_big.__dlpack__()
    with pytest.raises(InvalidDescriptorError):
        dataclasses.replace(ref, region_size=0).__dlpack__()
    with pytest.raises(InvalidDescriptorError):
        dataclasses.replace(ref, device="cuda").__dlpack__()
    # Claims more bytes than the block has: the C core refuses it.
    with pytest.raises(SnakepitError):
        dataclasses.replace(ref, nbytes=1 << 40, shape=(1 << 30, 4)).__dlpack__()
    # Not a block at all.
    with pytest.raises(SnakepitError):
        dataclasses.replace(ref, offset=ref.offset + 64).__dlpack__()
    assert block_refcount(ref) == before


def test_released_block_cannot_be_exported() -> None:
    ref = snakepit.ref_of(snakepit.zeros((4,), "float32"))
    gc.collect()  # the array is gone: its block is free
    with pytest.raises(SnakepitError):
        ref.__dlpack__()


def test_from_dlpack_of_a_ref_is_a_shared_view() -> None:
    array = snakepit.zeros((5,), "float32")
    view = snakepit.from_dlpack(snakepit.ref_of(array))
    assert snakepit.is_shared(view)
    view[1] = 3.0
    assert array[1] == 3.0
    assert snakepit.from_dlpack(array) is array


def test_from_dlpack_copies_foreign_producers_once() -> None:
    source = np.arange(12, dtype=np.float32).reshape(3, 4)
    shared = snakepit.from_dlpack(source)
    assert snakepit.is_shared(shared)
    np.testing.assert_array_equal(shared, source)
    source[0, 0] = -1.0
    assert shared[0, 0] == 0.0
    ref = snakepit.ref_of(shared)
    np.testing.assert_array_equal(snakepit.from_ref(ref), shared)


def test_from_dlpack_of_torch_tensors() -> None:
    torch = _torch()
    tensor = torch.arange(6, dtype=torch.int64).reshape(2, 3).T
    shared = snakepit.from_dlpack(tensor)
    assert snakepit.is_shared(shared)
    np.testing.assert_array_equal(shared, tensor.numpy())
    tensor[0, 0] = 100
    assert shared[0, 0] == 0


def test_from_dlpack_refuses_non_producers() -> None:
    with pytest.raises(TypeError, match="DLPack"):
        snakepit.from_dlpack([1, 2, 3])


def test_bfloat16_arrays_keep_their_tag_through_torch() -> None:
    torch = _torch()
    array = snakepit.zeros((3,), "bfloat16")
    array.view(np.uint16)[...] = 0x3F80  # 1.0 in bfloat16
    assert array.dtype == BFLOAT16
    tensor = torch.from_dlpack(snakepit.ref_of(array))
    assert tensor.tolist() == [1.0, 1.0, 1.0]
