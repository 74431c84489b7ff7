"""Arrow tables (and pandas frames) through a real Pool, without copies (SPEC §1.2).

The functions the workers run live in this module: workers import it by
reference (pytest puts the repository root on ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit.errors import InvalidDescriptorError
from snakepit.zero_copy import _arrow

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")

MIB = 1 << 20
ROWS_10MIB = (10 * MIB) // 8

_STATE: dict[str, Any] = {}


# ------------------------------------------------------------ worker side


def column_sum(table: Any, name: str) -> tuple[int, bool]:
    """The sum of one column, and whether the table arrived in shared memory."""
    return pc.sum(table.column(name)).as_py(), zero_copy.is_shared_table(table)


def make_table(rows: int) -> Any:
    return pa.table({"i": np.arange(rows, dtype=np.int64), "f": np.ones(rows)})


def make_batch(rows: int) -> Any:
    return make_table(rows).to_batches()[0]


def batch_info(batch: Any) -> tuple[str, int, bool]:
    return type(batch).__name__, batch.num_rows, zero_copy.is_shared_table(batch)


def identity(value: Any) -> Any:
    return value


def open_ref(ref: zero_copy.ArrowRef) -> int:
    return int(snakepit.table_from_ref(ref).num_rows)


def keep_table(table: Any) -> None:
    """Keep a column of a borrowed table beyond the call (a session's state)."""
    _STATE["kept"] = table.column("i")


def kept_sum() -> int:
    return int(pc.sum(_STATE["kept"]).as_py())


def let_go() -> None:
    _STATE.pop("kept", None)


def live_blocks() -> int:
    """Blocks of this worker's arena that someone still references."""
    zero_copy.reclaim()
    return zero_copy.arena_stats().get("live_blocks", 0)


def frame_summary(frame: Any) -> tuple[str, int, str]:
    return type(frame).__name__, len(frame), str(frame["s"].iloc[1])


# ------------------------------------------------------------ caller side


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as pool:
        yield pool


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert predicate(), what


def _supervisor_live_blocks() -> int:
    zero_copy.reclaim()
    return zero_copy.arena_stats().get("live_blocks", 0)


def test_a_10mib_table_argument_is_summed_in_shared_memory(pool: snakepit.Pool) -> None:
    table = make_table(ROWS_10MIB)
    assert table.nbytes >= 10 * MIB
    total, shared = pool.call(column_sum, table, "i")
    assert total == ROWS_10MIB * (ROWS_10MIB - 1) // 2
    assert shared


def test_a_shared_table_argument_is_not_copied_again(pool: snakepit.Pool) -> None:
    shared = snakepit.share_table(make_table(ROWS_10MIB))
    before = _supervisor_live_blocks()
    total, in_shm = pool.call(column_sum, shared, "i")
    assert in_shm
    assert total == ROWS_10MIB * (ROWS_10MIB - 1) // 2
    assert _supervisor_live_blocks() == before  # no new block for the call
    echoed = pool.call(identity, shared)  # back as a descriptor of the same block
    assert _arrow.describe_table(echoed) == _arrow.describe_table(shared)


def test_table_results_arrive_in_shared_memory(pool: snakepit.Pool) -> None:
    result = pool.call(make_table, ROWS_10MIB)
    assert isinstance(result, pa.Table)
    assert zero_copy.is_shared_table(result)
    ref = _arrow.describe_table(result)
    assert ref is not None
    assert ref.data.region.split("-")[1] != str(os.getpid())  # the worker's memory
    assert result.column("i")[12345].as_py() == 12345
    # The worker drops its own reference after sending; ours is the last one.
    _wait_for(lambda: zero_copy.block_refcount(ref.data) == 1, "one reference left")
    del result
    assert zero_copy.block_refcount(ref.data) == 0


def test_record_batches_both_ways(pool: snakepit.Pool) -> None:
    batch = make_batch(ROWS_10MIB // 4)
    assert pool.call(batch_info, batch) == ("RecordBatch", ROWS_10MIB // 4, True)
    result = pool.call(make_batch, ROWS_10MIB // 4)
    assert isinstance(result, pa.RecordBatch)
    assert zero_copy.is_shared_table(result)
    assert result.equals(batch)


def test_small_tables_travel_by_pickle(pool: snakepit.Pool) -> None:
    small = make_table(1000)
    total, shared = pool.call(column_sum, small, "i")
    assert total == 1000 * 999 // 2
    assert not shared
    result = pool.call(make_table, 1000)
    assert result.equals(small)
    assert not zero_copy.is_shared_table(result)


def test_pandas_frames_round_trip(pool: snakepit.Pool) -> None:
    pd = pytest.importorskip("pandas")
    rows = 200_000
    frame = pd.DataFrame(
        {
            "s": pd.array([f"name-{k}" for k in range(rows)], dtype="str"),
            "i": np.arange(rows),
            "c": pd.Categorical([("x", "y")[k % 2] for k in range(rows)]),
        },
        index=pd.Index(np.arange(rows) * 2, name="key"),
    )
    assert pool.call(frame_summary, frame) == ("DataFrame", rows, "name-1")
    echoed = pool.call(identity, frame)
    pd.testing.assert_frame_equal(echoed, frame, check_exact=True)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"offset": 1 << 40}, id="offset"),
        pytest.param({"shape": (1 << 40,), "nbytes": 1 << 40}, id="size"),
        pytest.param({"region": "/snakepit-1-0000000000000000"}, id="region"),
        pytest.param({"byte_offset": 1 << 20}, id="byte-offset"),
    ],
)
def test_forged_arrow_refs_raise_typed_errors_in_the_caller(
    pool: snakepit.Pool, changes: dict[str, Any]
) -> None:
    shared = snakepit.share_table(make_table(1000))
    good = _arrow.describe_table(shared)
    assert good is not None
    assert pool.call(open_ref, good) == 1000  # the unforged one opens
    forged = dataclasses.replace(good, data=dataclasses.replace(good.data, **changes))
    with pytest.raises(InvalidDescriptorError):
        pool.call(open_ref, forged)
    assert pool.call(open_ref, good) == 1000  # the worker survived


def test_a_block_without_a_stream_raises_in_the_caller(pool: snakepit.Pool) -> None:
    block = snakepit.zeros(4096, "uint8")
    with pytest.raises(InvalidDescriptorError, match="Arrow"):
        pool.call(open_ref, zero_copy.ArrowRef(snakepit.ref_of(block)))


def test_tables_kept_by_the_worker_stay_valid(pool: snakepit.Pool) -> None:
    shared = snakepit.share_table(make_table(ROWS_10MIB // 8))
    ref = zero_copy.arrow_ref_of(shared)
    pool.options(session="keeper").call(keep_table, shared)
    assert zero_copy.block_refcount(ref.data) == 2  # the worker holds its own now
    ref.release()
    del shared
    decoys = [snakepit.empty(ROWS_10MIB // 8 * 16, "uint8") for _ in range(4)]
    for decoy in decoys:
        decoy[:] = 0xFF
    rows = ROWS_10MIB // 8
    assert pool.options(session="keeper").call(kept_sum) == rows * (rows - 1) // 2
    pool.options(session="keeper").call(let_go)
    assert zero_copy.block_refcount(ref.data) == 0


def test_no_block_outlives_the_calls() -> None:
    with snakepit.Pool(workers=1) as pool:
        worker_before = pool.call(live_blocks)
        before = _supervisor_live_blocks()
        for _ in range(3):
            total, _ = pool.call(column_sum, make_table(ROWS_10MIB), "i")
            assert total > 0
            result = pool.call(make_table, ROWS_10MIB)
            assert pool.call(column_sum, result, "f")[0] == ROWS_10MIB
            del result
        assert _supervisor_live_blocks() == before
        _wait_for(lambda: pool.call(live_blocks) == worker_before, "worker blocks released")
