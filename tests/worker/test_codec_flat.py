"""Call arguments made of scalars and shared arrays: a plain pickle with the
arrays' descriptors beside it (``_wire/_flat.py``), checked on decode."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit._wire import _bulk, _flat, codec
from snakepit.errors import SerializationError
from snakepit.zero_copy import _packed, _ref
from tests.worker.test_codec_lean import _python_calls


@pytest.fixture
def shared() -> Iterator[np.ndarray[Any, Any]]:
    array = snakepit.share(np.arange(256, dtype=np.float32))
    yield array
    del array


@pytest.fixture
def other() -> Iterator[np.ndarray[Any, Any]]:
    array = snakepit.share(np.arange(12, dtype=np.int64).reshape(3, 4))
    yield array
    del array


def test_shared_arrays_among_scalars_travel_beside_a_plain_pickle(
    shared: np.ndarray[Any, Any], other: np.ndarray[Any, Any]
) -> None:
    rows = other[1:]
    args = ((shared, 0.5, "x", None, rows), {"k": other, "n": 3, "none": None})
    encoded = codec.encode(args)
    blob = encoded.blob
    assert _flat.is_flat(blob)
    assert [slot for slot, *_ in blob[3]] == [0, 4, "k"]
    # The caller keeps the arrays alive until the worker is done.
    assert [id(array) for array in encoded.keepalive] == [id(shared), id(rows), id(other)]
    # Plain: the C unpickler alone reads it (holes where the arrays were).
    assert pickle.loads(blob[0]) == (
        (None, 0.5, "x", None, None),
        {"k": None, "n": 3, "none": None},
    )
    borrowed: list[Any] = []
    back_args, back_kwargs = codec.decode(blob, borrowed=borrowed)
    assert back_args[1:4] == (0.5, "x", None)
    assert back_kwargs["n"] == 3
    assert back_kwargs["none"] is None
    assert np.array_equal(back_args[4], rows)
    assert back_args[4].strides == rows.strides
    assert len(borrowed) == 3
    back_args[0][7] = 99.0
    back_kwargs["k"][2, 3] = -1
    # The same memory: no copy.
    assert shared[7] == 99.0
    assert other[2, 3] == -1


@pytest.mark.parametrize("count", [1, 2, 16])
def test_arrays_alone_by_position_round_trip_as_the_same_memory(count: int) -> None:
    arrays = [snakepit.share(np.full(8, index, dtype=np.int32)) for index in range(count)]
    blob = codec.encode((tuple(arrays), {})).blob
    assert _flat.is_flat(blob)
    assert pickle.loads(blob[0]) == ((None,) * count, {})
    args, kwargs = codec.decode(blob)
    assert kwargs == {}
    assert [int(array[0]) for array in args] == list(range(count))
    args[-1][3] = -5
    assert arrays[-1][3] == -5
    # A scalar among them, or a keyword, is a pickle of its own.
    mixed = codec.encode(((*arrays[:-1], 7), {"tail": arrays[-1]})).blob
    mixed_args, mixed_kwargs = codec.decode(mixed)
    assert mixed_args[-1] == 7
    assert mixed_kwargs["tail"][3] == -5


def test_more_arrays_than_the_flat_way_holds_go_the_general_way() -> None:
    arrays = tuple(snakepit.share(np.zeros(4)) for _ in range(17))
    blob = codec.encode((arrays, {})).blob
    assert not _flat.is_flat(blob)
    args, _ = codec.decode(blob)
    assert len(args) == 17


def test_decoding_to_keep_gives_each_array_a_reference(shared: np.ndarray[Any, Any]) -> None:
    blob = codec.encode(((shared,), {})).blob
    (kept,), _ = codec.decode(blob, keep=True)
    assert snakepit.is_shared(kept)
    assert np.array_equal(kept, np.arange(256, dtype=np.float32))


def test_it_costs_a_handful_of_python_calls(shared: np.ndarray[Any, Any]) -> None:
    args = ((shared, 1, 2.0), {"axis": 0})
    codec.encode(args)
    blob = codec.encode(args).blob
    codec.decode(blob)
    assert _python_calls(lambda: codec.encode(args)) < 12
    assert _python_calls(lambda: codec.decode(blob)) < 20


def test_scalars_alone_are_one_plain_pickle() -> None:
    encoded = codec.encode(((1, 2.5, "s", None, True), {"a": 1}))
    assert encoded.blob == (encoded.payload, ())
    assert pickle.loads(encoded.payload) == ((1, 2.5, "s", None, True), {"a": 1})


@pytest.mark.parametrize(
    "make",
    [
        lambda a: (([a],), {}),  # nested in a list
        lambda a: ((np.zeros(_bulk.OUT_OF_BAND_BYTES, np.uint8),), {}),  # fresh, not small
        lambda a: ((np.arange(8)[::2],), {}),  # fresh, strided
        lambda a: ((np.asfortranarray(np.ones((3, 4))),), {}),  # fresh, Fortran order
        lambda a: ((np.arange(4, dtype=">i4"),), {}),  # fresh, not native byte order
        lambda a: ((np.array([1, "a"], dtype=object),), {}),  # fresh, objects
        lambda a: ((np.zeros(2, dtype=[("x", "f4"), ("y", "i2")]),), {}),  # fresh, records
        lambda a: ((a.view(np.matrix),), {}),  # a subclass
        lambda a: ((a.view(">i4"),), {}),  # shared, alone, not native byte order
        lambda a: ((a.view(">i4"), 1), {}),  # the same among scalars
        lambda a: ((a, {"nested": 1}), {}),  # a dict among the arguments
        lambda a: ((a, b"bytes"), {}),  # bytes: not a scalar here
        lambda a: ((a,) * 20, {}),  # a long argument list
        lambda a: ((a,), {1: a}),  # a keyword that is not a str
        lambda a: [(a,), {}],  # not a tuple
        lambda a: ((a,), {}, None),  # not two parts
        lambda a: a,  # a bare array
    ],
    ids=[
        "nested",
        "fresh-large",
        "fresh-strided",
        "fresh-fortran",
        "fresh-big-endian",
        "fresh-object",
        "fresh-record",
        "subclass",
        "shared-big-endian-alone",
        "shared-big-endian",
        "dict",
        "bytes",
        "long",
        "int-keyword",
        "list",
        "three-parts",
        "bare",
    ],
)
def test_anything_else_goes_the_general_way_and_round_trips(
    shared: np.ndarray[Any, Any], make: Callable[[np.ndarray[Any, Any]], Any]
) -> None:
    value = make(shared)
    blob = codec.encode(value).blob
    assert not _flat.is_flat(blob)
    back = codec.decode(blob)
    assert pickle.dumps(_plain(back)) == pickle.dumps(_plain(value))


def _plain(value: Any) -> Any:
    """``value`` with arrays as lists, to compare round trips."""
    if isinstance(value, np.ndarray):
        return ("array", type(value).__name__, value.tolist())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _flat_blob(holes: Any, slots: Any) -> tuple[Any, ...]:
    return (pickle.dumps(holes, protocol=5), (), None, slots)


def _forged(fields: tuple[Any, ...], **changes: Any) -> bytes:
    """Packed fields with some of them changed (as another process could send)."""
    names = (
        "region",
        "region_size",
        "offset",
        "nbytes",
        "byte_offset",
        "dtype",
        "shape",
        "strides",
    )
    values = dict(zip(names, fields, strict=True)) | changes
    return _packed.pack(tuple(values[name] for name in names))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("holes", "slots", "needle"),
    [
        (((None,), {}), lambda f, p: ((1, p),), "no hole"),  # out of range
        (((None,), {}), lambda f, p: ((-1, p),), "no hole"),
        (((0.5,), {}), lambda f, p: ((0, p),), "no hole"),  # not a hole
        (((None,), {}), lambda f, p: ((0, p), (0, p)), "no hole"),  # twice
        (((None,), {}), lambda f, p: (("k", p),), "no hole"),  # no such keyword
        (((None,), {}), lambda f, p: ((0.0, p),), "no hole"),
        (((None,), {}), lambda f, p: ((0, *f),), "malformed"),  # fields, not packed
        (((None,), {}), lambda f, p: ((0,),), "malformed"),
        (((None,), {}), lambda f, p: ([0, p],), "malformed"),
        (((None,), {}), lambda f, p: (), "without descriptors"),
        (((None,), {}), lambda f, p: [(0, p)], "without descriptors"),
        ([None], lambda f, p: ((0, p),), "not \\(args, kwargs\\)"),
        (((None,), {}, 1), lambda f, p: ((0, p),), "not \\(args, kwargs\\)"),
        (((None,), {}), lambda f, p: ((0, f),), "packed descriptor is bytes"),
        (((None,), {}), lambda f, p: ((0, bytearray(p)),), "packed descriptor is bytes"),
        (((None,), {}), lambda f, p: ((0, p[:-1]),), "disagrees"),
        (((None,), {}), lambda f, p: ((0, p + b"\0"),), "disagrees"),
        (((None,), {}), lambda f, p: ((0, p[:20]),), "truncated"),
        (((None,), {}), lambda f, p: ((0, b""),), "truncated"),
        (((None,), {}), lambda f, p: ((0, _forged(f, region_size=0)),), "region_size"),
        (((None,), {}), lambda f, p: ((0, _forged(f, dtype="float128")),), "dtype"),
        (((None,), {}), lambda f, p: ((0, _forged(f, shape=(1 << 40,))),), "block of"),
        (((None,), {}), lambda f, p: ((0, _forged(f, byte_offset=8)),), "spans"),
        (((None,), {}), lambda f, p: ((0, _forged(f, strides=(1 << 62,))),), "strides"),
        (((None,), {}), lambda f, p: ((0, _forged(f, region=f[0][:-4] + "dead")),), "dead"),
        (((None,), {}), lambda f, p: ((0, _forged(f, region="é")),), "region|name"),
    ],
)
def test_forged_flat_arguments_are_refused(
    shared: np.ndarray[Any, Any],
    holes: Any,
    slots: Callable[[tuple[Any, ...], bytes], Any],
    needle: str,
) -> None:
    fields = _ref.fields_of(shared)
    assert fields is not None
    with pytest.raises(SerializationError, match=needle):
        codec.decode(_flat_blob(holes, slots(fields, _packed.pack(fields))))
    # The real one still opens.
    (back,), _ = codec.decode(codec.encode(((shared,), {})).blob)
    assert np.array_equal(back, shared)


def test_a_pool_call_hands_shared_arguments_over_without_a_copy(
    shared: np.ndarray[Any, Any], other: np.ndarray[Any, Any]
) -> None:
    with snakepit.Pool(1) as pool:
        total = pool.call(_add_into, shared, 1.5, out=other)
    assert total == float(np.arange(256, dtype=np.float32).sum())
    assert shared[0] == 1.5  # the worker wrote into our memory
    assert other[0, 0] == 7


def _add_into(array: np.ndarray[Any, Any], value: float, *, out: np.ndarray[Any, Any]) -> float:
    total = float(array.sum())
    array += value
    out[0, 0] = 7
    return total


@pytest.mark.parametrize(
    "view",
    [
        lambda b: b.T,
        lambda b: b[::2, ::3],
        lambda b: b[::-1],
        lambda b: b[:0],
        lambda b: b.reshape(-1)[5:6].reshape(()),
    ],
    ids=["transposed", "strided", "negative-stride", "empty", "zero-d"],
)
def test_views_and_odd_scalars_round_trip(view: Callable[[Any], Any]) -> None:
    base = snakepit.share(np.arange(24, dtype=np.float64).reshape(4, 6))
    array = view(base)
    blob = codec.encode(((array, float("nan"), -float("inf"), -0.0), {"big": 10**40})).blob
    assert _flat.is_flat(blob)
    (back, nan, inf, zero), kwargs = codec.decode(blob)
    assert back.shape == array.shape
    assert back.strides == array.strides
    assert np.array_equal(back, array)
    assert np.isnan(nan)
    assert inf == -float("inf")
    assert str(zero) == "-0.0"
    assert kwargs == {"big": 10**40}


def test_a_worker_that_dies_holding_flat_arguments_loses_nothing(
    shared: np.ndarray[Any, Any],
) -> None:
    from snakepit.errors import WorkerCrashedError

    with snakepit.Pool(1) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.call(_crash_with, shared, 1)
        # What the worker wrote before dying stays; the next worker opens
        # the same memory again.
        assert shared[0] == -5.0
        expected = float(shared.sum())
        out = snakepit.share(np.zeros((3, 4)))
        assert pool.call(_add_into, shared, 0.0, out=out) == expected
        assert out[0, 0] == 7


def _crash_with(array: np.ndarray[Any, Any], code: int) -> None:
    import os

    array[0] = -5.0  # written into the caller's memory before the crash
    os._exit(code + 136)


@pytest.mark.parametrize(
    "arguments",
    [((), {}), ((1, 2.5, "s", None, True, 3j), {}), ((), {"a": 1, "b": "x"}), ((1,), {"k": None})],
    ids=["none", "positional", "keywords", "both"],
)
def test_scalar_arguments_are_one_plain_pickle_without_a_walk(
    arguments: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_walk(*_: Any, **__: Any) -> None:
        raise AssertionError("scalars alone need no walk over the arguments")

    monkeypatch.setattr(_flat, "_parts", no_walk)
    encoded = codec.encode(arguments, snapshot=False)
    assert encoded.blob == (encoded.payload, ())
    assert pickle.loads(encoded.payload) == arguments
    assert codec.decode(encoded.blob) == arguments


class _Text(str):
    """Not exactly a ``str``: pickled by class, so not a scalar."""


@pytest.mark.parametrize(
    "arguments",
    [(([1],), {}), ((_Text("x"),), {}), ((), {"a": [1]}), ((), {1: 2})],
    ids=["list", "str-subclass", "list-keyword", "int-key"],
)
def test_anything_but_scalars_is_walked(arguments: Any) -> None:
    walked: list[Any] = []
    real = _flat._parts

    def counting(*args: Any, **kwargs: Any) -> Any:
        walked.append(args)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_flat, "_parts", counting)
        encoded = codec.encode(arguments, snapshot=False)
    assert walked
    assert codec.decode(encoded.blob) == arguments
