"""The codec on its own: every carrier, borrow versus transfer, cleanup, forgeries."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _cuda_carrier, codec
from snakepit.errors import InvalidDescriptorError, SerializationError
from snakepit.zero_copy import _arrow, _host_arrays, _numpy, _torch
from snakepit.zero_copy._ref import TensorRef

MIB = 1 << 20
NOT_US = 1  # a receiver pid other than ours: descriptors then carry a reference


def _big_array() -> np.ndarray[Any, Any]:
    return np.arange(2 * MIB // 8, dtype=np.float64)


def _big_tensor() -> Any:
    torch = pytest.importorskip("torch")
    return torch.arange(2 * MIB // 4, dtype=torch.float32)


def _big_table() -> Any:
    pa = pytest.importorskip("pyarrow")
    return pa.table({"x": np.arange(2 * MIB // 8, dtype=np.int64)})


MAKERS = {"numpy": _big_array, "torch": _big_tensor, "arrow": _big_table}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    if hasattr(a, "equals"):
        return bool(a.equals(b))
    return bool((a == b).all())


def test_every_carrier_is_registered_once_with_its_own_tag() -> None:
    assert (_numpy, _torch, _arrow, _host_arrays, _cuda_carrier) == codec.CARRIERS
    tags = [carrier.tag for carrier in codec.CARRIERS]
    assert len(set(tags)) == len(tags)
    for carrier in codec.CARRIERS:
        assert isinstance(carrier, ModuleType)
        assert callable(carrier.to_block)
        assert callable(carrier.from_block)
        assert isinstance(carrier.types(), frozenset)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_large_objects_travel_as_descriptors_and_come_back_equal(kind: str) -> None:
    value = MAKERS[kind]()
    encoded = codec.encode({"value": value})
    assert len(encoded.payload) < 4096  # a descriptor, not 2 MiB of data
    assert len(encoded.keepalive) == 1
    assert encoded.transfers == []
    borrowed: list[Any] = []
    decoded = codec.decode(encoded.blob, borrowed=borrowed)["value"]
    assert type(decoded) is type(value)
    assert _equal(decoded, value)
    assert snakepit.is_shared(decoded)
    assert len(borrowed) == 1
    assert snakepit.is_shared(borrowed[0])


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_borrowed_descriptors_take_no_reference(kind: str) -> None:
    encoded = codec.encode(MAKERS[kind]())
    array = encoded.keepalive[0]
    ref = zero_copy.ref_of(array)
    assert zero_copy.block_refcount(ref) == 1  # the sender's own
    decoded = codec.decode(encoded.blob)
    assert zero_copy.block_refcount(ref) == 1  # borrowed: nothing taken
    kept = codec.decode(encoded.blob, keep=True)
    assert zero_copy.block_refcount(ref) == 2  # kept: a reference of its own
    del kept
    assert zero_copy.block_refcount(ref) == 1
    del decoded


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_transferred_descriptors_carry_a_reference_that_is_adopted(kind: str) -> None:
    encoded = codec.encode(MAKERS[kind](), receiver=NOT_US)
    assert len(encoded.transfers) == 1
    ref = encoded.transfers[0]
    assert zero_copy.block_refcount(ref) == 2  # the sender's array + the transfer
    decoded = codec.decode(encoded.blob, keep=True)
    encoded.keepalive.clear()
    assert zero_copy.block_refcount(ref) == 1  # only the adopted one is left
    del decoded
    assert zero_copy.block_refcount(ref) == 0


def test_a_receiver_that_owns_the_block_borrows_it() -> None:
    encoded = codec.encode(_big_array(), receiver=os.getpid())
    assert encoded.transfers == []


def test_small_objects_are_pickled_inline() -> None:
    small = np.arange(10)
    encoded = codec.encode((small, b"x" * 10, "text"))
    assert encoded.keepalive == []
    assert b"snakepit.array" not in encoded.payload
    back = codec.decode(encoded.blob)
    assert np.array_equal(back[0], small)
    assert not snakepit.is_shared(back[0])


def test_a_failed_encoding_gives_back_its_transfer_references() -> None:
    array = snakepit.share(_big_array())
    ref = zero_copy.ref_of(array)

    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("no")

    with pytest.raises(SerializationError, match="cannot serialize"):
        codec.encode([array, Unpicklable()], receiver=NOT_US)
    assert zero_copy.block_refcount(ref) == 1  # the transfer taken for `array` is gone
    ref.release()


def test_functions_from_main_go_by_value_through_cloudpickle() -> None:
    script = (
        "from snakepit._wire import codec\n"
        "def f(x):\n    return x + 1\n"
        "blob = codec.encode(f).blob\n"
        "import pickle, sys\n"
        "print(b'cloudpickle' in blob[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"


def _forge(encoded: codec.Encoded, old: bytes, new: bytes) -> bytes:
    assert old in encoded.payload
    return encoded.payload.replace(old, new)


@pytest.mark.parametrize(
    ("pid", "needle"),
    [
        (("snakepit.nothing", None, False, None), "unknown persistent id"),
        (("snakepit.array", "not a ref", False, None), "unknown persistent id"),
        (("snakepit.bytes",), "unknown persistent id"),
    ],
)
def test_forged_persistent_ids_are_serialization_errors(pid: tuple[Any, ...], needle: str) -> None:
    class Forger(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return pid if obj == "marker" else None

    file = io.BytesIO()
    Forger(file, protocol=5).dump(["marker"])
    with pytest.raises(SerializationError, match=needle):
        codec.decode(file.getvalue())


def test_forged_descriptors_are_refused_and_the_decoder_survives() -> None:
    good = snakepit.share(_big_array())
    ref = zero_copy.ref_of(good)
    encoded = codec.encode(good)
    forged = _forge(encoded, ref.region.encode(), ref.region.encode()[:-4] + b"dead")
    with pytest.raises(SerializationError) as info:
        codec.decode(forged)
    assert isinstance(info.value.__cause__, InvalidDescriptorError)
    assert np.array_equal(codec.decode(encoded.blob), good)  # the real one still opens
    ref.release()


def test_a_forged_extra_is_refused() -> None:
    with pytest.raises(InvalidDescriptorError, match="unexpected extra"):
        _numpy.from_block(np.zeros(3), "float32")
    pytest.importorskip("pyarrow")
    with pytest.raises(InvalidDescriptorError, match="unknown kind"):
        _arrow.from_block(snakepit.zeros(16, "uint8"), "tabXe")
    with pytest.raises(InvalidDescriptorError, match="uint8"):
        _arrow.from_block(snakepit.zeros(4, "float32"), "table")


def test_a_forged_torch_dtype_is_refused() -> None:
    pytest.importorskip("torch")
    with pytest.raises(InvalidDescriptorError, match="torch dtype"):
        _torch.from_block(snakepit.zeros(4, "float32"), "float128")
    with pytest.raises(InvalidDescriptorError, match="arrived as"):
        _torch.from_block(snakepit.zeros(4, "float32"), "int64")


def test_descriptors_pickle_small() -> None:
    ref = zero_copy.ref_of(snakepit.zeros(1024))
    assert isinstance(ref, TensorRef)
    assert len(pickle.dumps(ref)) < 300
    ref.release()


def _cyclic() -> list[Any]:
    loop: list[Any] = [1, 2]
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "value",
    [
        list(range(10)),
        list(range(100_000)),  # far past the scan's budget: the C pickler takes it
        [(i, str(i)) for i in range(1000)],
        {f"k{i}": [i, float(i), None] for i in range(500)},
        [[[[[[1]]]]]],
        {1: "int keys are not plain"},
        ["x" * (1 << 20)],
        [b"y" * 100] * 50,
    ],
)
def test_plain_containers_of_every_size_round_trip(value: Any) -> None:
    assert codec.decode(codec.encode(value).blob) == value


def test_a_cyclic_container_round_trips() -> None:
    back = codec.decode(codec.encode(_cyclic()).blob)
    assert back[:2] == [1, 2]
    assert back[2] is back


@pytest.mark.parametrize("depth", [0, 3, 50])
def test_an_array_deep_in_a_plain_looking_container_still_travels_shared(depth: int) -> None:
    value: Any = _big_array()
    for _ in range(depth):
        value = [value, 1, "a"]
    encoded = codec.encode(value)
    assert b"snakepit.array" in encoded.payload
    back = codec.decode(encoded.blob)
    for _ in range(depth):
        back = back[0]
    assert snakepit.is_shared(back)
    assert np.array_equal(back, _big_array())


def test_large_bytes_inside_a_long_list_still_travel_out_of_band() -> None:
    big = b"z" * (codec.OUT_OF_BAND_BYTES + 1)
    value = [*range(200), big]
    encoded = codec.encode(value)
    assert encoded.buffers
    assert len(encoded.payload) < codec.OUT_OF_BAND_BYTES
    assert codec.decode(encoded.blob) == value
