"""Small fresh arrays among call arguments: their data beside a flat pickle
(``_wire/_flat.py``), arriving as pickle would give them, checked on decode."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit._wire import _bulk, _flat, codec
from snakepit.errors import SerializationError
from snakepit.zero_copy import BFLOAT16


def _read_only(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    array.flags.writeable = False
    return array


ARRAYS: list[Callable[[], np.ndarray[Any, Any]]] = [
    lambda: np.arange(256, dtype=np.float32),
    lambda: np.arange(12, dtype=np.int64).reshape(3, 4),
    lambda: np.array([True, False, True]),
    lambda: np.array([1 + 2j, -0.0 - 1j], dtype=np.complex128),
    lambda: np.array([np.nan, np.inf, -0.0], dtype=np.float16),
    lambda: np.array(7.5),  # 0-d
    lambda: np.zeros((0, 5), dtype=np.uint16),  # empty
    lambda: np.zeros(4, dtype=BFLOAT16),
    lambda: np.zeros(_bulk.OUT_OF_BAND_BYTES - 1, dtype=np.uint8),  # the largest inline
    lambda: _read_only(np.arange(6, dtype=np.int8)),
    lambda: np.arange(20, dtype=np.int32)[5:9],  # a contiguous slice of a larger array
]
IDS = [
    "float32",
    "2-d",
    "bool",
    "complex",
    "float16-odd",
    "0-d",
    "empty",
    "bfloat16",
    "largest",
    "read-only",
    "slice",
]


@pytest.mark.parametrize("make", ARRAYS, ids=IDS)
def test_a_small_fresh_array_arrives_as_pickle_gives_it(
    make: Callable[[], np.ndarray[Any, Any]],
) -> None:
    array = make()
    twin = array.copy()
    twin.flags.writeable = array.flags.writeable
    encoded = codec.encode(((array, 0.5), {"twin": twin, "n": 1}))
    blob = encoded.blob
    assert _flat.is_flat(blob)
    assert encoded.keepalive == []  # copied: the caller may change it at once
    assert encoded.size >= 2 * array.nbytes
    borrowed: list[Any] = []
    (back, half), kwargs = codec.decode(blob, borrowed=borrowed)
    assert borrowed == []  # its own memory: nothing of the caller's
    pickled = pickle.loads(pickle.dumps(array, protocol=5))
    for got in (back, kwargs["twin"]):
        assert type(got) is np.ndarray
        assert got.dtype == pickled.dtype
        assert got.dtype.metadata == pickled.dtype.metadata
        assert got.shape == pickled.shape
        assert got.flags.writeable == pickled.flags.writeable
        assert got.tobytes() == array.tobytes()
    assert half == 0.5
    assert kwargs["n"] == 1


def test_the_data_is_a_copy_taken_at_encoding() -> None:
    array = np.arange(8, dtype=np.float64)
    blob = codec.encode(((array,), {})).blob
    array[:] = -1.0  # the caller goes on with its array
    (back,), _ = codec.decode(blob)
    assert back.tolist() == list(range(8))
    back[0] = 42.0  # writable, and not the caller's memory
    assert array[0] == -1.0


def test_shared_and_fresh_arrays_mix() -> None:
    shared = snakepit.share(np.arange(4, dtype=np.float32))
    fresh = np.ones(3, dtype=np.int16)
    encoded = codec.encode(((fresh, shared), {"k": fresh + 0}))
    assert _flat.is_flat(encoded.blob)
    assert [id(a) for a in encoded.keepalive] == [id(shared)]
    borrowed: list[Any] = []
    (a, b), kwargs = codec.decode(encoded.blob, borrowed=borrowed)
    assert a.tolist() == [1, 1, 1]
    assert kwargs["k"].tolist() == [1, 1, 1]
    assert len(borrowed) == 1
    assert borrowed[0] is b
    assert snakepit.is_shared(b)
    assert not snakepit.is_shared(a)
    del a, b, kwargs, borrowed, shared


class _Bytes(bytes):
    pass


def test_one_array_passed_twice_stays_one_array() -> None:
    array = np.zeros(4)
    blob = codec.encode(((array,), {"out": array})).blob
    assert not _flat.is_flat(blob)  # the general way: pickle keeps them one
    (back,), kwargs = codec.decode(blob)
    assert back is kwargs["out"]


def _inline_blob(*fields: Any) -> tuple[Any, ...]:
    return (pickle.dumps(((None,), {}), protocol=5), (), None, ((0, *fields),))


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (("float32", (4,), bytes(15)), "15 bytes"),
        (("float32", (4,), bytes(17)), "17 bytes"),
        (("float32", (2, 2), bytearray(4)), "4 bytes"),
        (("object", (1,), bytes(8)), "dtype"),
        (("float128", (1,), bytes(16)), "dtype"),
        ((["float32"], (1,), bytes(4)), "dtype"),
        (("float32", [1], bytes(4)), "tuples"),
        (("float32", (-1,), bytes(4)), "ints in"),
        (("float32", (1.0,), bytes(4)), "ints in"),
        (("float32", (1,) * 65, bytes(4)), "disagree"),
        (("uint8", (1 << 31, 1 << 31, 1 << 31), bytes(1)), "2\\*\\*62"),
        (("float32", (1,), [0, 0, 0, 0]), "type list"),
        (("float32", (1,), _Bytes(4)), "type _Bytes"),
        (("float32", (1,), "abcd"), "type str"),
    ],
)
def test_forged_inline_arrays_are_refused(fields: tuple[Any, ...], needle: str) -> None:
    with pytest.raises(SerializationError, match=needle):
        codec.decode(_inline_blob(*fields))
    # A well-formed one opens.
    (back,), _ = codec.decode(_inline_blob("float32", (1,), bytes(4)))
    assert back.tolist() == [0.0]


def test_an_inline_descriptor_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(SerializationError, match="malformed"):
        codec.decode(_inline_blob("float32", (1,)))
    with pytest.raises(SerializationError, match="malformed"):
        codec.decode(_inline_blob("float32", (1,), bytes(4), None))


def test_a_pool_call_gets_a_copy_of_a_fresh_array() -> None:
    array = np.arange(16, dtype=np.float64)
    with snakepit.Pool(1) as pool:
        assert pool.call(_double_and_sum, array, scale=2.0) == 2 * float(array.sum())
        # The worker changed its own copy, as through pickle.
        assert array.tolist() == list(range(16))
        assert pool.call(_flags, _read_only(np.zeros(3))) == (False, (3,), "float64")
        assert pool.call(_flags, np.zeros((2, 3), dtype=np.int32)) == (True, (2, 3), "int32")
        assert pool.call(_write_out, array, out=array) == 0.0  # one array in the worker too


def _write_out(array: np.ndarray[Any, Any], *, out: np.ndarray[Any, Any]) -> float:
    out[0] = 99.0
    return float(array[0]) - 99.0


def _double_and_sum(array: np.ndarray[Any, Any], *, scale: float) -> float:
    array *= scale
    return float(array.sum())


def _flags(array: np.ndarray[Any, Any]) -> tuple[bool, tuple[int, ...], str]:
    return bool(array.flags.writeable), array.shape, str(array.dtype)


# ---------------------------------------------------------------- results


def _result_round_trip(value: Any) -> tuple[tuple[Any, ...], Any]:
    import os

    blob = codec.encode(value, receiver=os.getpid()).blob
    return blob, codec.decode(blob, keep=True)


def test_a_small_array_result_travels_flat() -> None:
    array = np.arange(10, dtype=np.int16).reshape(2, 5)
    blob, back = _result_round_trip(array)
    assert _flat.is_flat(blob)
    assert blob[2] == _flat.VALUE
    assert type(back) is np.ndarray
    assert back.dtype == array.dtype
    assert back.shape == (2, 5)
    assert back.flags.writeable
    assert np.array_equal(back, array)


def test_tuples_and_dicts_of_small_arrays_and_scalars_travel_flat() -> None:
    probs = np.array([0.25, 0.75])
    blob, back = _result_round_trip((probs, 1, "label", None))
    assert blob[2] == _flat.TUPLE
    assert type(back) is tuple
    assert back[1:] == (1, "label", None)
    assert back[0].tolist() == [0.25, 0.75]
    blob, back = _result_round_trip({"logits": _read_only(np.ones(3)), "n": 2.5})
    assert blob[2] == _flat.DICT
    assert type(back) is dict
    assert list(back) == ["logits", "n"]
    assert back["n"] == 2.5
    assert not back["logits"].flags.writeable  # as pickle gives a read-only array


@pytest.mark.parametrize(
    "make",
    [
        lambda: (1, 2.0, "three"),  # no array: the plain pickle
        lambda: [np.ones(2)],  # a list
        lambda: (np.ones(2), [1]),  # a list inside
        lambda: {1: np.ones(2)},  # a key that is not a str
        lambda: np.zeros(_bulk.OUT_OF_BAND_BYTES),  # not small
        lambda: (lambda a: (a, a))(np.ones(2)),  # one array twice
    ],
    ids=["scalars", "list", "nested", "int-key", "large", "twice"],
)
def test_other_results_go_the_general_way(make: Callable[[], Any]) -> None:
    value = make()
    blob, back = _result_round_trip(value)
    assert not _flat.is_flat(blob)
    assert pickle.dumps(_listed(back)) == pickle.dumps(_listed(value))


def _listed(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", value.tolist())
    if isinstance(value, (list, tuple)):
        return type(value)(_listed(item) for item in value)
    if isinstance(value, dict):
        return {key: _listed(item) for key, item in value.items()}
    return value


@pytest.mark.parametrize(
    ("form", "holes", "needle"),
    [
        ("value", ((None, 1), {}), "not a value"),
        ("value", ((None,), {"k": 1}), "not a value"),
        ("tuple", ((None,), {"k": 1}), "not a tuple"),
        ("dict", ((None,), {}), "not a dict"),
        ("bogus", ((None,), {}), "malformed payload"),
    ],
)
def test_forged_flat_results_are_refused(form: str, holes: Any, needle: str) -> None:
    slots = ((0, "float32", (1,), bytes(4)),)
    blob = (pickle.dumps(holes, protocol=5), (), form, slots)
    with pytest.raises(SerializationError, match=needle):
        codec.decode(blob, keep=True)


def test_a_flat_result_may_not_name_a_shared_block_without_its_reference_flag() -> None:
    from snakepit.zero_copy import _packed

    shared = snakepit.share(np.ones(4))
    packed = _packed.packed_of(shared)
    assert packed is not None
    blob = (pickle.dumps(((None,), {}), protocol=5), (), "value", ((0, packed),))
    with pytest.raises(SerializationError, match="shared array"):
        codec.decode(blob, keep=True)
    del shared


def test_a_pool_returns_small_arrays_in_every_form() -> None:
    with snakepit.Pool(1) as pool:
        alone = pool.call(_make_result, "value")
        assert alone.tolist() == [0.0, 1.0, 2.0]
        assert alone.flags.writeable
        pair = pool.call(_make_result, "tuple")
        assert pair[0].tolist() == [0.0, 1.0, 2.0]
        assert pair[1] == "ok"
        named = pool.call(_make_result, "dict")
        assert named["x"].tolist() == [0.0, 1.0, 2.0]
        assert not named["frozen"].flags.writeable


def _make_result(form: str) -> Any:
    array = np.arange(3, dtype=np.float64)
    if form == "value":
        return array
    if form == "tuple":
        return array, "ok"
    frozen = np.zeros(2)
    frozen.flags.writeable = False
    return {"x": array, "frozen": frozen}


def test_a_worker_that_dies_holding_small_arrays_loses_nothing() -> None:
    from snakepit.errors import WorkerCrashedError

    array = np.arange(4.0)
    with snakepit.Pool(1) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(_die_with, array, scale=2.0)
        assert array.tolist() == [0.0, 1.0, 2.0, 3.0]  # the worker had a copy
        assert pool.call(_double_and_sum, array, scale=2.0) == 12.0


def _die_with(array: np.ndarray[Any, Any], *, scale: float) -> None:
    import os

    array *= scale
    os._exit(134)
