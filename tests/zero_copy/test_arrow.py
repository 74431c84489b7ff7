"""Arrow tables in shared memory: written once, opened without a copy (docs/zero-copy.md)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import codec
from snakepit.errors import InvalidDescriptorError, SerializationError, SharedMemoryError
from snakepit.zero_copy import _arrow

pa = pytest.importorskip("pyarrow")

MIB = 1 << 20
ROWS = (2 * MIB) // 8  # 2 MiB per int64 column: above the 1 MiB threshold


def _table(rows: int = ROWS) -> Any:
    return pa.table(
        {
            "i": np.arange(rows, dtype=np.int64),
            "f": np.linspace(0.0, 1.0, rows),
            "s": pa.array([f"r{k % 1000}" for k in range(rows)]),
        }
    )


def _buffer_addresses(table: Any) -> list[int]:
    batches = table.to_batches() if isinstance(table, pa.Table) else [table]
    return [
        buf.address
        for batch in batches
        for column in batch.columns
        for buf in column.buffers()
        if buf is not None and buf.size > 0
    ]


def _inside(table: Any, other: Any = None) -> bool:
    """Whether every column buffer of ``table`` lies inside the shared block
    under ``other`` (by default: under ``table`` itself)."""
    found = _arrow._registered(table if other is None else other)
    assert found is not None, "not a table in shared memory"
    block = found[0]
    low = block.__array_interface__["data"][0]
    high = low + block.nbytes
    addresses = _buffer_addresses(table)
    return bool(addresses) and all(low <= a < high for a in addresses)


def test_share_table_writes_once_and_opens_without_copy() -> None:
    table = _table()
    shared = snakepit.share_table(table)
    assert isinstance(shared, pa.Table)
    assert shared.equals(table)
    ref = zero_copy.arrow_ref_of(shared)
    assert ref.kind == "table"
    assert _inside(shared)
    assert not _inside(table, shared)  # the original is left where it was
    assert snakepit.share_table(shared) is shared  # already shared: no second copy
    ref.release()


def test_record_batch_stays_a_record_batch() -> None:
    batch = _table().to_batches()[0]
    shared = snakepit.share_table(batch)
    assert isinstance(shared, pa.RecordBatch)
    assert shared.equals(batch)
    ref = zero_copy.arrow_ref_of(shared)
    assert ref.kind == "record_batch"
    assert _inside(shared)
    ref.release()


class _CapsuleStream:
    """A foreign object exposing only the Arrow PyCapsule stream interface."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self._table.__arrow_c_stream__(requested_schema)


def test_pycapsule_streams_are_accepted() -> None:
    table = _table(1000)
    shared = snakepit.share_table(_CapsuleStream(table))
    assert isinstance(shared, pa.Table)
    assert shared.equals(table)
    assert zero_copy.is_shared_table(shared)


def test_share_table_refuses_other_objects() -> None:
    with pytest.raises(TypeError, match="share_table"):
        snakepit.share_table(np.zeros(4))


def test_arrow_ref_of_needs_a_shared_table() -> None:
    with pytest.raises(SharedMemoryError, match="share_table"):
        zero_copy.arrow_ref_of(_table(10))
    assert _arrow.describe_table(_table(10)) is None


def test_table_from_ref_maps_the_same_memory_and_holds_a_reference() -> None:
    shared = snakepit.share_table(_table())
    ref = zero_copy.arrow_ref_of(shared)
    assert zero_copy.block_refcount(ref.data) == 1
    opened = snakepit.table_from_ref(ref)
    assert opened.equals(shared)
    assert _inside(opened)
    assert zero_copy.block_refcount(ref.data) == 2
    column = opened.column("i")  # a slice keeps the block alive too
    del opened
    assert zero_copy.block_refcount(ref.data) == 2
    del column
    assert zero_copy.block_refcount(ref.data) == 1


def test_arrow_ref_is_small_and_pickles() -> None:
    ref = zero_copy.arrow_ref_of(snakepit.share_table(_table()))
    blob = pickle.dumps(ref, protocol=5)
    assert len(blob) < 512
    assert pickle.loads(blob) == ref
    assert ref.nbytes == ref.data.shape[0] > 2 * MIB
    ref.release()


@pytest.fixture
def good_ref() -> Any:
    shared = snakepit.share_table(_table(1000))
    ref = zero_copy.arrow_ref_of(shared)
    yield ref
    ref.release()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"kind": "parquet"}, id="kind"),
        pytest.param({"data": "not a ref"}, id="data-type"),
        pytest.param({"data_changes": {"dtype": "float32", "strides": (4,)}}, id="dtype"),
        pytest.param({"data_changes": {"strides": (2,)}}, id="strided"),
        pytest.param({"data_changes": {"nbytes": 1 << 62}}, id="nbytes-huge"),
        pytest.param({"data_changes": {"shape": (1 << 40,)}}, id="shape-past-block"),
        pytest.param({"data_changes": {"offset": 1 << 30}}, id="offset-past-region"),
        pytest.param({"data_changes": {"offset": 200}}, id="offset-misaligned"),
        pytest.param({"data_changes": {"byte_offset": -8}}, id="byte-offset-negative"),
    ],
)
def test_malformed_arrow_refs_raise_invalid_descriptor(
    good_ref: zero_copy.ArrowRef, changes: dict[str, Any]
) -> None:
    data_changes = changes.pop("data_changes", None)
    if data_changes is not None:
        changes["data"] = dataclasses.replace(good_ref.data, **data_changes)
    forged = dataclasses.replace(good_ref, **changes)
    with pytest.raises(InvalidDescriptorError):
        snakepit.table_from_ref(forged)


def test_a_block_without_an_arrow_stream_is_refused() -> None:
    block = snakepit.empty(4096, "uint8")
    block[:] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
    ref = zero_copy.ArrowRef(snakepit.ref_of(block))
    with pytest.raises(InvalidDescriptorError, match="Arrow"):
        snakepit.table_from_ref(ref)
    block[:] = 0
    with pytest.raises(InvalidDescriptorError, match="Arrow"):
        snakepit.table_from_ref(ref)


def test_a_truncated_stream_is_refused() -> None:
    shared = snakepit.share_table(_table())
    good = zero_copy.arrow_ref_of(shared)
    short = dataclasses.replace(
        good, data=dataclasses.replace(good.data, shape=(good.nbytes // 2,))
    )
    with pytest.raises(InvalidDescriptorError, match="Arrow"):
        snakepit.table_from_ref(short)


# ------------------------------------------------------------------ codec


def test_codec_sends_large_tables_as_descriptors() -> None:
    table = _table()
    encoded = codec.encode(("x", table))
    assert b"snakepit.arrow" in encoded.payload
    assert len(encoded.payload) < 2048
    assert len(encoded.keepalive) == 1
    borrowed: list[Any] = []
    name, decoded = codec.decode(encoded.blob, borrowed=borrowed)
    assert name == "x"
    assert decoded.equals(table)
    assert len(borrowed) == 1
    assert zero_copy.is_shared_table(decoded)
    assert _inside(decoded)


def test_codec_pickles_small_tables_inline() -> None:
    table = _table(1000)
    encoded = codec.encode(table)
    assert b"snakepit.arrow" not in encoded.payload
    assert encoded.keepalive == []
    decoded = codec.decode(encoded.blob)
    assert decoded.equals(table)
    assert not zero_copy.is_shared_table(decoded)


def test_codec_does_not_copy_a_shared_table_again() -> None:
    shared = snakepit.share_table(_table())
    ref = zero_copy.arrow_ref_of(shared)
    encoded = codec.encode(shared)
    assert len(encoded.keepalive) == 1
    assert _arrow.describe_table(codec.decode(encoded.blob)) == ref
    ref.release()


def test_transferred_tables_are_adopted_and_released() -> None:
    table = _table()
    assert os.getpid() != 1
    encoded = codec.encode(table, receiver=1)  # not our pid: the reference travels
    assert len(encoded.transfers) == 1
    ref = encoded.transfers[0]
    assert zero_copy.block_refcount(ref) == 2  # the sender's array + the transfer
    decoded = codec.decode(encoded.blob, keep=True)
    encoded.keepalive.clear()
    assert zero_copy.block_refcount(ref) == 1  # only the adopted one is left
    assert decoded.equals(table)
    del decoded
    assert zero_copy.block_refcount(ref) == 0


def test_record_batches_travel_through_the_codec() -> None:
    batch = _table().to_batches()[0]
    encoded = codec.encode(batch)
    assert b"snakepit.arrow" in encoded.payload
    decoded = codec.decode(encoded.blob, keep=True)
    assert isinstance(decoded, pa.RecordBatch)
    assert decoded.equals(batch)


def test_a_forged_descriptor_in_a_payload_is_a_serialization_error() -> None:
    encoded = codec.encode(_table())
    payload = encoded.payload.replace(b"table", b"tabXe")
    assert payload != encoded.payload
    with pytest.raises(SerializationError) as info:
        codec.decode(payload)
    assert isinstance(info.value.__cause__, InvalidDescriptorError)


def test_importing_snakepit_and_encoding_do_not_import_pyarrow() -> None:
    code = (
        "import sys, numpy as np, snakepit\n"
        "from snakepit._wire import codec\n"
        "e = codec.encode((np.ones(1 << 18), {'a': 1}, [1.5]))\n"
        "codec.decode(e.blob)\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported'\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ pandas


@pytest.fixture
def pd() -> Any:
    return pytest.importorskip("pandas")


def _mixed_frame(pd: Any, rows: int) -> Any:
    return pd.DataFrame(
        {
            "s": pd.array([f"name-{k}" if k % 7 else None for k in range(rows)], dtype="str"),
            "i": np.arange(rows, dtype=np.int64),
            "f": np.linspace(0, 1, rows, dtype=np.float32),
            "n": pd.array([k if k % 5 else None for k in range(rows)], dtype="Int64"),
            "c": pd.Categorical([("x", "y", "z")[k % 3] for k in range(rows)]),
            "t": pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC"),
            "b": np.arange(rows) % 2 == 0,
        },
        index=pd.Index(np.arange(rows) * 3, name="key"),
    )


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(None, id="named-int"),
        pytest.param("range", id="range"),
        pytest.param("str", id="str"),
        pytest.param("multi", id="multi"),
    ],
)
def test_faithful_frames_travel_as_arrow_and_arrive_equal(pd: Any, index: str | None) -> None:
    frame = _mixed_frame(pd, 100_000)
    if index == "range":
        frame.index = pd.RangeIndex(5, 5 + 2 * len(frame), 2, name="r")
    elif index == "str":
        frame.index = pd.Index([f"k{k}" for k in range(len(frame))], dtype="str")
    elif index == "multi":
        frame.index = pd.MultiIndex.from_arrays(
            [np.arange(len(frame)) % 10, np.arange(len(frame))], names=["a", "b"]
        )
    encoded = codec.encode(frame)
    assert b"snakepit.arrow" in encoded.payload
    assert len(encoded.payload) < 4096
    decoded = codec.decode(encoded.blob, keep=True)
    pd.testing.assert_frame_equal(decoded, frame, check_exact=True, check_index_type=True)
    assert type(decoded.index) is type(frame.index)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(
            lambda pd, n: pd.DataFrame(
                {"o": [1 if k % 3 else None for k in range(n)]}, dtype=object
            ),
            id="object-ints-with-none",
        ),
        pytest.param(
            lambda pd, n: pd.DataFrame({"l": [[k] for k in range(n)], "i": np.arange(n)}),
            id="object-lists",
        ),
        pytest.param(
            lambda pd, n: pd.DataFrame({"i": np.arange(n), "f": np.ones(n)}),
            id="numpy-numbers",
        ),
    ],
)
def test_other_frames_keep_the_pickle_path(pd: Any, frame: Any) -> None:
    value = frame(pd, 300_000)
    encoded = codec.encode(value)
    assert b"snakepit.arrow" not in encoded.payload
    pd.testing.assert_frame_equal(codec.decode(encoded.blob, keep=True), value)


def test_numpy_number_frames_still_share_their_blocks(pd: Any) -> None:
    frame = pd.DataFrame({"i": np.arange(300_000), "f": np.ones(300_000)})
    encoded = codec.encode(frame)
    assert b"snakepit.array" in encoded.payload
    assert len(encoded.payload) < 4096


def test_small_frames_are_pickled(pd: Any) -> None:
    frame = _mixed_frame(pd, 100)
    encoded = codec.encode(frame)
    assert b"snakepit.arrow" not in encoded.payload
    pd.testing.assert_frame_equal(codec.decode(encoded.blob), frame)


def test_share_table_converts_a_frame_to_a_shared_table(pd: Any) -> None:
    frame = _mixed_frame(pd, 1000)
    shared = snakepit.share_table(frame)
    assert isinstance(shared, pa.Table)
    assert zero_copy.is_shared_table(shared)
    pd.testing.assert_frame_equal(shared.to_pandas(), frame)
