"""empty/zeros/share/ref_of/from_ref across processes (docs/zero-copy.md)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import DtypeError, SharedMemoryError

NUMERIC = [d for d in zero_copy.SUPPORTED_DTYPES if d not in ("bool", "bfloat16")]

# The child attaches every ref, checks what it sees, then overwrites it with
# `pattern(n) + 1` (bools: negated) so the parent can verify the write.
CHILD = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    import snakepit
    refs = pickle.loads(sys.stdin.buffer.read())
    for ref, expected in refs:
        view = snakepit.from_ref(ref)
        assert view.shape == ref.shape, (view.shape, ref.shape)
        raw = view.view(np.uint16) if ref.dtype == "bfloat16" else view
        assert np.array_equal(raw, expected), (ref.dtype, raw, expected)
        if ref.dtype == "bool":
            raw[...] = ~expected
        else:
            raw[...] = expected + 1
    print("ok")
    """
)


def _pattern(dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    n = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(n) % 3 == 0).reshape(shape)
    if dtype == "bfloat16":
        return (np.arange(n, dtype=np.uint16) + 0x3F80).reshape(shape)
    return (np.arange(n) % 100).astype(dtype).reshape(shape)


def _run_child(payload: list[tuple[snakepit.TensorRef, np.ndarray[Any, Any]]]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=pickle.dumps(payload),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.strip() == b"ok"


def _fill(array: np.ndarray[Any, Any], dtype: str, values: np.ndarray[Any, Any]) -> None:
    target = array.view(np.uint16) if dtype == "bfloat16" else array
    target[...] = values


def _read(array: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    return array.view(np.uint16) if dtype == "bfloat16" else array


def test_second_process_writes_every_dtype_in_place() -> None:
    shape = (6, 7)
    arrays = {d: snakepit.empty(shape, d) for d in zero_copy.SUPPORTED_DTYPES}
    payload = []
    for dtype, array in arrays.items():
        expected = _pattern(dtype, shape)
        _fill(array, dtype, expected)
        payload.append((snakepit.ref_of(array), expected))
    _run_child(payload)
    for dtype, array in arrays.items():
        expected = _pattern(dtype, shape)
        want = ~expected if dtype == "bool" else expected + 1
        assert np.array_equal(_read(array, dtype), want), dtype


@pytest.mark.parametrize(
    "view",
    [
        pytest.param(lambda a: a[::2, 1::3], id="step-slices"),
        pytest.param(lambda a: a.T, id="transpose"),
        pytest.param(lambda a: a[::-1, ::-2], id="negative-strides"),
        pytest.param(lambda a: a[3], id="row"),
        pytest.param(lambda a: a[2:2], id="empty"),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "int16", "complex128", "bfloat16"])
def test_non_contiguous_views_travel_without_copy(view: Any, dtype: str) -> None:
    base = snakepit.zeros((8, 9), dtype)
    _fill(base, dtype, _pattern(dtype, (8, 9)))
    sub = view(base)
    ref = snakepit.ref_of(sub)
    assert ref.strides == sub.strides
    expected = _read(sub, dtype).copy()
    _run_child([(ref, expected)])
    assert np.array_equal(_read(sub, dtype), expected + 1)


def test_from_ref_is_the_same_memory_in_process() -> None:
    array = snakepit.zeros(1000, "float64")
    view = snakepit.from_ref(snakepit.ref_of(array))
    view[10] = 42.0
    assert array[10] == 42.0
    assert snakepit.is_shared(view)
    array[11] = 7.0
    assert view[11] == 7.0


def test_share_copies_once_and_keeps_shared_arrays() -> None:
    source = np.arange(12, dtype=np.int32).reshape(3, 4)
    shared = snakepit.share(source)
    assert snakepit.is_shared(shared)
    assert not snakepit.is_shared(source)
    assert np.array_equal(shared, source)
    assert snakepit.share(shared) is shared


def test_share_of_non_contiguous_source_is_contiguous_copy() -> None:
    source = np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::3]
    shared = snakepit.share(source)
    assert np.array_equal(shared, source)
    assert shared.flags.c_contiguous


def test_tensor_ref_is_small_and_immutable() -> None:
    ref = snakepit.ref_of(snakepit.empty((128, 128), "float32"))
    assert len(pickle.dumps(ref)) < 400
    with pytest.raises(AttributeError):
        ref.shape = (1,)  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(ref)) == ref


def test_zeros_clears_reused_memory() -> None:
    first = snakepit.empty(4096, "uint8")
    first[:] = 0xAB
    address = first.__array_interface__["data"][0]
    snakepit.ref_of(first).release()
    del first
    second = snakepit.zeros(4096, "uint8")
    assert second.__array_interface__["data"][0] == address  # the block was reused
    assert not second.any()


def test_bfloat16_tag_survives_views_and_refs() -> None:
    array = snakepit.empty((4, 4), "bfloat16")
    assert snakepit.ref_of(array[1:, ::2]).dtype == "bfloat16"
    assert array.dtype.itemsize == 2


def test_unsupported_dtypes_are_typed_errors() -> None:
    with pytest.raises(DtypeError):
        snakepit.empty(3, "U4")
    with pytest.raises(DtypeError):
        snakepit.share(np.array([object()]))
    with pytest.raises(DtypeError):
        snakepit.share(np.zeros(3, dtype=">f4"))


def test_ref_of_plain_array_explains_what_to_do() -> None:
    with pytest.raises(SharedMemoryError, match="share"):
        snakepit.ref_of(np.zeros(3))
    with pytest.raises(TypeError):
        snakepit.ref_of([1, 2, 3])  # type: ignore[arg-type]


def test_negative_shape_is_rejected() -> None:
    for shape in [(3, -1), [-2], -1, (np.int64(-4),)]:
        with pytest.raises(ValueError, match="negative"):
            snakepit.empty(shape)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape",
    [
        (2, 3),
        [2, 3],
        (np.int32(2), 3),
        (np.uint64(3), np.int8(2)),
        range(2, 4),
        6,
        np.int64(6),
        (),
    ],
)
def test_every_form_of_shape_gives_a_tuple_of_ints(shape: object) -> None:
    array = snakepit.empty(shape, "uint8")  # type: ignore[arg-type]
    expected = np.empty(shape, "uint8").shape  # type: ignore[call-overload]
    assert array.shape == expected
    assert all(type(dim) is int for dim in array.shape)


@pytest.mark.parametrize("shape", [(2.0, 3), 2.5, ("2",), None])
def test_a_shape_of_non_integers_is_a_type_error(shape: object) -> None:
    with pytest.raises(TypeError):
        snakepit.empty(shape)  # type: ignore[arg-type]


def test_array_over_refuses_shapes_beyond_its_buffer() -> None:
    from snakepit import _core

    allocation = _core.Arena().alloc(4096)
    buffer = allocation.buffer()
    assert _core.array_over(buffer, (64, 64), np.dtype(np.uint8)).shape == (64, 64)
    for shape in [(4097,), (65, 64), (1 << 62, 1 << 62), (-1,)]:
        with pytest.raises(ValueError, match=r"dimension|fit"):
            _core.array_over(buffer, shape, np.dtype(np.uint8))
    with pytest.raises(ValueError, match="fit"):
        _core.array_over(buffer, (1024,), np.dtype(np.float64))


def test_alloc_array_checks_the_shape_it_reads() -> None:
    from snakepit import _core

    arena = _core.Arena()
    try:
        array = arena.alloc_array((3, np.int64(4)), np.dtype(np.float32))
        assert array.shape == (3, 4)
        assert array.flags.c_contiguous
        assert array.flags.writeable
        assert isinstance(array.base, _core.SharedBuffer)
        assert array.base.nbytes == 48
        del array
        for shape, error in [((-1,), ValueError), ((1,) * 65, ValueError), ((1.5,), TypeError)]:
            with pytest.raises(error):
                arena.alloc_array(shape, np.dtype(np.uint8))
        for shape in [(1 << 46,), (1 << 23, 1 << 23, 1 << 23)]:
            with pytest.raises(_core.CoreError) as info:
                arena.alloc_array(shape, np.dtype(np.uint8))
            assert info.value.status == _core.Status.NOSPACE
        assert arena.stats()["live_blocks"] == 0
    finally:
        arena.close()
