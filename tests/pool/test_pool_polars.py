"""polars frames and series travel through shared memory as Arrow streams."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pl = pytest.importorskip("polars")

import snakepit  # noqa: E402
from snakepit.errors import SerializationError  # noqa: E402
from snakepit.zero_copy._runtime import threshold_bytes  # noqa: E402

from . import _polars_tasks as tasks  # noqa: E402

ROWS = 200_000  # ~3 MiB of numbers: above the 1 MiB threshold


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1) as pool:
        yield pool


def test_a_frame_argument_arrives_over_shared_memory(pool: snakepit.Pool) -> None:
    frame = tasks.make_frame(ROWS)
    places = pool.call(tasks.numeric_buffers, frame)
    assert len(places) == 2
    assert all(place and place.startswith("/dev/shm/snakepit-") for place in places), places


def test_a_series_argument_arrives_over_shared_memory(pool: snakepit.Pool) -> None:
    series = pl.Series("x", np.arange(ROWS, dtype=np.float64))
    (place,) = pool.call(tasks.numeric_buffers, series)
    assert place is not None
    assert place.startswith("/dev/shm/snakepit-")


def test_a_frame_result_arrives_over_shared_memory(pool: snakepit.Pool) -> None:
    frame = pool.call(tasks.make_frame, ROWS)
    assert isinstance(frame, pl.DataFrame)
    places = tasks.numeric_buffers(frame)
    assert all(place and place.startswith("/dev/shm/snakepit-") for place in places), places
    assert frame.equals(tasks.make_frame(ROWS))


@pytest.mark.parametrize(
    "frame",
    [
        pl.DataFrame({"a": np.arange(ROWS), "b": [None if i % 7 else i for i in range(ROWS)]}),
        pl.DataFrame({"c": pl.Series(["x", "y"] * (ROWS // 2), dtype=pl.Categorical)}),
        pl.DataFrame({"when": np.arange(ROWS).astype("datetime64[us]")}),
        pl.DataFrame({"l": [[i, i + 1] for i in range(ROWS // 4)]}),
        pl.DataFrame({"tiny": [1, 2, 3]}),  # below the threshold: pickled
    ],
    ids=["nulls", "categorical", "datetime", "lists", "small"],
)
def test_frames_round_trip_with_their_dtypes(pool: snakepit.Pool, frame: pl.DataFrame) -> None:
    back = pool.call(tasks.kind_of, frame), pool.call(_echo, frame)
    assert back[0] == "polars.DataFrame"
    assert back[1].schema == frame.schema
    assert back[1].equals(frame)


def test_a_series_keeps_its_name_and_dtype(pool: snakepit.Pool) -> None:
    series = pl.Series("labels", [f"v{i}" for i in range(ROWS)])
    back = pool.call(_echo, series)
    assert isinstance(back, pl.Series)
    assert back.name == "labels"
    assert back.dtype == series.dtype
    assert back.equals(series)


def test_object_columns_are_refused_not_sent_as_addresses(pool: snakepit.Pool) -> None:
    # polars would export Python objects as their addresses in this process.
    count = threshold_bytes() // 8 + 1
    frame = pl.DataFrame([pl.Series("o", [object()] * count, dtype=pl.Object)])
    assert frame.estimated_size() >= threshold_bytes()
    with pytest.raises(SerializationError):
        pool.call(tasks.kind_of, frame)
    assert pool.call(tasks.kind_of, 1) == "builtins.int"


def test_the_worker_computes_on_the_shared_frame(pool: snakepit.Pool) -> None:
    frame = tasks.make_frame(ROWS)
    assert pool.call(tasks.column_total, frame, "id") == float(np.arange(ROWS).sum())


def _echo(value: object) -> object:
    return value


@pytest.mark.parametrize(
    ("dtype", "holds"),
    [
        (pl.Object, True),
        (pl.List(pl.Object), True),
        (pl.Struct({"a": pl.Int64, "b": pl.List(pl.Object)}), True),
        (pl.Array(pl.Object, 2), True),
        (pl.Int64, False),
        (pl.List(pl.Utf8), False),
        (pl.Struct({"a": pl.Float32}), False),
    ],
)
def test_nested_object_dtypes_are_found(dtype: object, holds: bool) -> None:
    from snakepit.zero_copy._arrow import _holds_objects

    assert _holds_objects(dtype, pl.Object) is holds
