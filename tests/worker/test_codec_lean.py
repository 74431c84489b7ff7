"""The lean codec: plain data never calls back into Python, descriptors are
flat tuples checked on decode, and small arrays in bulk share one block."""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _bulk, _decode, codec
from snakepit.errors import InvalidDescriptorError, SerializationError

KIB = 1 << 10
MIB = 1 << 20
NOT_US = 1  # a receiver pid other than ours: blocks then carry a reference


@dataclass
class Row:
    """Importable (not ``__main__``): plain pickle sends it by reference."""

    a: int
    b: float


def _python_calls(run: Callable[[], Any]) -> int:
    """How many Python-level functions run while ``run()`` runs (C calls aside)."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize(
    "make",
    [
        lambda: [{"a": i, "b": float(i)} for i in range(50_000)],
        lambda: [(i, float(i)) for i in range(50_000)],
        lambda: [f"s{i}" for i in range(50_000)],
        lambda: {f"k{i}": list(range(10)) for i in range(5_000)},
        lambda: [Row(i, float(i)) for i in range(20_000)],
        lambda: [np.arange(3), *range(50_000)],  # an array among them: one callback
    ],
    ids=["dicts", "tuples", "strings", "dict-of-lists", "dataclasses", "one-small-array"],
)
def test_large_arguments_pickle_without_a_callback_per_object(make: Callable[[], Any]) -> None:
    value = make()
    codec.encode(value)  # warm: first-use imports and caches
    calls = _python_calls(lambda: codec.encode(value))
    # Fixed costs only (the encoder's own functions, a reducer per array):
    # a hook per object would be tens of thousands.
    assert calls < 60, calls
    back = codec.decode(codec.encode(value).blob)
    if isinstance(value, list) and isinstance(value[0], np.ndarray):
        assert np.array_equal(back[0], value[0])
        assert back[1:] == value[1:]
    else:
        assert back == value


def test_the_word_main_in_data_still_round_trips() -> None:
    value = [{"name": "__main__", "i": i} for i in range(10_000)]
    assert codec.decode(codec.encode(value).blob) == value


@pytest.fixture
def shared() -> Iterator[np.ndarray[Any, Any]]:
    array = snakepit.share(np.arange(256, dtype=np.float32))
    yield array
    del array


def test_a_shared_array_is_one_flat_descriptor(shared: np.ndarray[Any, Any]) -> None:
    encoded = codec.encode(((shared,), {}))
    assert len(encoded.payload) < 256
    assert b"TensorRef" not in encoded.payload  # no descriptor object, fields only
    calls = _python_calls(lambda: codec.encode(((shared,), {})))
    assert calls < 32, (
        calls
    )  # fixed costs (one types() per carrier); persistent ids cost one per field
    back = codec.decode(encoded.blob)[0][0]
    assert snakepit.is_shared(back)
    assert back.flags.writeable
    back[0] = 42.0
    assert shared[0] == 42.0  # the same memory: no copy


def _forged(args: tuple[Any, ...]) -> bytes:
    class Forger(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is Row:
                return codec._shared, args
            return NotImplemented

    file = io.BytesIO()
    Forger(file, protocol=5).dump([Row(1, 2.0)])
    return file.getvalue()


def _fields(shared: np.ndarray[Any, Any]) -> tuple[Any, ...]:
    fields = zero_copy._ref.fields_of(shared)
    assert fields is not None
    return fields


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda f: ("snakepit.nothing", False, *f, None), "unknown descriptor"),
        (lambda f: ("snakepit.array", 1, *f, None), "unknown descriptor"),
        (lambda f: ("snakepit.array", False, *f), "11 fields"),
        (lambda f: ("snakepit.array", False, f[0], f[1], -1, *f[3:], None), "offset"),
        (lambda f: ("snakepit.array", False, *f[:3], 10**30, *f[4:], None), "nbytes"),
        (lambda f: ("snakepit.array", False, *f[:5], "float128", *f[6:], None), "dtype"),
        (lambda f: ("snakepit.array", False, *f[:6], (1 << 40,), f[7], None), "block of"),
        (lambda f: ("snakepit.array", False, *f[:7], (4.0,), None), "strides"),
        (lambda f: ("snakepit.array", False, *f, "float32"), "unexpected extra"),
        (lambda f: ("snakepit.array", False, f[0][:-4] + "dead", *f[1:], None), "dead"),
    ],
)
def test_forged_descriptors_are_refused(
    shared: np.ndarray[Any, Any], change: Callable[[tuple[Any, ...]], tuple[Any, ...]], needle: str
) -> None:
    with pytest.raises(SerializationError, match=needle):
        codec.decode(_forged(change(_fields(shared))))
    # The real one still opens.
    assert np.array_equal(codec.decode(codec.encode(shared).blob), shared)


def test_the_descriptor_name_opens_nothing_outside_the_codec(
    shared: np.ndarray[Any, Any],
) -> None:
    with pytest.raises(pickle.UnpicklingError, match="codec only"):
        pickle.loads(codec.encode(shared).payload)


def test_a_bad_field_is_an_invalid_descriptor_error(shared: np.ndarray[Any, Any]) -> None:
    fields = _fields(shared)
    with pytest.raises(InvalidDescriptorError, match="region_size"):
        zero_copy._ref.array_from_fields((*fields[:1], 0, *fields[2:]), "borrow")


def test_a_second_pass_reuses_the_copies_of_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from snakepit.zero_copy import _numpy

    calls: list[int] = []
    real = _numpy.to_block

    def counted(obj: Any, threshold: int) -> Any:
        calls.append(1)
        return real(obj, threshold)

    monkeypatch.setattr(_numpy, "to_block", counted)
    big = np.arange(2 * MIB // 8, dtype=np.float64)
    # The word makes the payload go through cloudpickle after the C pickler.
    encoded = codec.encode([big, "__main__"])
    assert len(calls) == 1  # one copy into shared memory, not one per pass
    assert len(encoded.keepalive) == 1
    assert encoded.bulk is None  # the array went as a descriptor in both passes
    assert len(encoded.payload) < 4096
    back = codec.decode(encoded.blob)
    assert np.array_equal(back[0], big)
    assert snakepit.is_shared(back[0])


class _Held:
    """Importable, weakly referable: whether the encoder keeps a payload alive."""

    def __init__(self, value: int) -> None:
        self.value = value


def test_the_reused_encoder_keeps_nothing_of_a_payload(shared: np.ndarray[Any, Any]) -> None:
    import weakref

    held = _Held(7)
    alive = weakref.ref(held)
    encoded = codec.encode(((shared, held), {}))
    assert codec._reused.sender is not None  # kept for the next encoding
    back = codec.decode(encoded.blob)
    assert back[0][1].value == 7
    del encoded, back, held
    # Gone by reference counting: no memo, list or file of the reused
    # encoder refers to it (no garbage collection needed).
    assert alive() is None
    assert not codec._reused.sender.keepalive
    assert not codec._reused.sender.copies


def test_an_encoding_inside_a_reducer_builds_its_own(shared: np.ndarray[Any, Any]) -> None:
    inner: list[codec.Encoded] = []

    class Nested:
        def __reduce__(self) -> Any:
            inner.append(codec.encode(((shared, _Held(1)), {})))
            return (_Held, (2,))

    encoded = codec.encode([shared, Nested(), _Held(3)])
    outer = codec.decode(encoded.blob)
    assert np.array_equal(outer[0], shared)
    assert outer[1].value == 2
    assert outer[2].value == 3
    nested = codec.decode(inner[0].blob)
    assert np.array_equal(nested[0][0], shared)
    assert nested[0][1].value == 1
    # Both encodings over: the next one reuses the encoder again.
    assert not codec._reused.busy
    assert codec.decode(codec.encode([_Held(4)]).blob)[0].value == 4


def test_a_failed_encoding_leaves_the_next_one_whole(shared: np.ndarray[Any, Any]) -> None:
    class Refuses:
        def __reduce__(self) -> Any:
            raise TypeError("not today")

    with pytest.raises(SerializationError, match="not today"):
        codec.encode([shared, _Held(1), Refuses()])
    assert not codec._reused.busy
    back = codec.decode(codec.encode([_Held(5), shared]).blob)
    assert back[0].value == 5
    assert np.array_equal(back[1], shared)


def test_a_large_pickle_does_not_stay_in_the_reused_file() -> None:
    big = [_Held(i) for i in range(20_000)]
    encoded = codec.encode(big)
    assert len(encoded.payload) > codec._REUSED_FILE_BYTES
    assert codec._reused.sender is None  # dropped with its file buffer
    assert [h.value for h in codec.decode(encoded.blob)] == list(range(20_000))
    small = codec.encode([_Held(1)])
    assert codec.decode(small.blob)[0].value == 1
    assert codec._reused.sender is not None


def test_threads_encode_at_once(shared: np.ndarray[Any, Any]) -> None:
    import threading

    failures: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            for i in range(300):
                back = codec.decode(codec.encode([_Held(seed * 1000 + i), shared]).blob)
                assert back[0].value == seed * 1000 + i
                assert np.array_equal(back[1], shared)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures


@pytest.mark.parametrize(
    "value",
    [
        None,
        ((1, "two"), {"three": 3.0}),
        ["_shared", "snakepit.bytes", "PQ", b"PQ\x00"],  # the marks, as data
        [Row(1, 2.0), Row(3, 4.0)],
    ],
    ids=["none", "plain-args", "marks-as-data", "classes"],
)
def test_small_plain_pickles_decode_the_same_either_way(value: Any) -> None:
    payload = codec.encode(value).payload
    fast = codec.decode(payload)
    # The full unpickler's answer, for comparison.
    slow = _decode._Unpickler(
        io.BytesIO(payload), opener=_decode._Opener(False, None), buffers=None
    )
    assert fast == slow.load() == value


def test_a_descriptor_in_a_small_pickle_still_opens(shared: np.ndarray[Any, Any]) -> None:
    payload = codec.encode([shared]).payload
    assert not _decode._needs_no_opener(payload)
    assert snakepit.is_shared(codec.decode(payload)[0])


class _Exits:
    """Unpickles into a raised SystemExit (a ``__reduce__`` that calls sys.exit)."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return sys.exit, (3,)


@pytest.mark.parametrize("form", ["bare", "blob", "flat"])
def test_a_small_pickle_that_exits_is_only_bad_data(form: str) -> None:
    payload = pickle.dumps(_Exits(), protocol=5)
    assert _decode._needs_no_opener(payload)  # the plain way decodes it
    blob: Any = {
        "bare": payload,
        "blob": (payload, ()),
        "flat": (payload, (), None, ((0, b"packed"),)),  # the flat decoder's way
    }[form]
    with pytest.raises(SerializationError, match="SystemExit") as caught:
        codec.decode(blob)
    assert isinstance(caught.value.__cause__, SystemExit)


def test_a_broken_small_pickle_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot deserialize"):
        codec.decode((pickle.dumps([1, 2, 3], protocol=5)[:-3], ()))


@pytest.mark.parametrize("value", [None, 0, -7, 2.5, True, 1j, "", "text"])
def test_a_small_scalar_is_the_blob_encode_gives(value: Any) -> None:
    blob = codec.scalar_blob(value)
    assert blob == codec.encode(value).blob
    assert codec.decode(blob) == value


@pytest.mark.parametrize(
    "value",
    [[1], (1,), {"a": 1}, b"x", "x" * _bulk.OUT_OF_BAND_BYTES, Row(1, 2.0)],
    ids=["list", "tuple", "dict", "bytes", "large-str", "object"],
)
def test_anything_else_has_no_scalar_blob(value: Any) -> None:
    assert codec.scalar_blob(value) is None
    assert codec.decode(codec.encode(value).blob) == value


@pytest.mark.parametrize(
    "value",
    [((), {}), ((1,), {}), ((), {"a": 1}), [(), {}], ((), {}, None)],
    ids=["none", "one-arg", "one-kwarg", "list", "three"],
)
def test_arguments_without_any_decode_as_they_were(value: Any) -> None:
    encoded = codec.encode(value)
    assert codec.decode(encoded.blob) == value
    assert codec.inband(encoded.blob)


def test_a_blob_with_buffers_is_not_inband() -> None:
    blob = codec.encode(b"z" * (4 * _bulk.OUT_OF_BAND_BYTES)).blob
    assert not codec.inband(blob)
    assert codec.decode(blob) == b"z" * (4 * _bulk.OUT_OF_BAND_BYTES)


@pytest.mark.parametrize(
    "payload",
    [pickle.dumps(b"Q"), pickle.dumps("P"), pickle.dumps("_shared"), b"x" * (65 << 10)],
    ids=["binpersid-byte", "persid-byte", "mark", "large"],
)
def test_the_opcode_bytes_or_the_mark_in_data_take_the_full_path(payload: bytes) -> None:
    assert not _decode._needs_no_opener(payload)


def test_a_pair_that_starts_with_an_array_is_not_taken_for_no_arguments() -> None:
    value = (np.arange(3.0), {})
    back = codec.decode(codec.encode(value).blob)
    assert np.array_equal(back[0], value[0])
    assert back[1] == {}


def test_each_decoding_of_no_arguments_gives_a_dict_of_its_own() -> None:
    blob = codec.encode(((), {})).blob
    first = codec.decode(blob)
    first[1]["added"] = 1
    assert codec.decode(blob) == ((), {})
    assert codec.decode(codec.scalar_blob(None)) is None  # type: ignore[arg-type]
