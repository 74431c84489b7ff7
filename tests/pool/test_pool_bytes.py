"""bytes, bytearray and memoryview at or above the threshold go through shared memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import telemetry
from snakepit.zero_copy._runtime import threshold_bytes

from . import _tasks

MIB = 1 << 20


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1) as pool:
        yield pool


def _wire_bytes_of_arguments(pool: snakepit.Pool, *args: Any) -> tuple[Any, int]:
    seen: list[float] = []

    def on_encoded(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        if metadata.get("what") == "arguments":
            seen.append(measurements["bytes"])

    telemetry.attach("test-bytes", ("snakepit", "serialize", "stop"), on_encoded)
    try:
        result = pool.call(*args)
    finally:
        telemetry.detach("test-bytes")
    assert len(seen) == 1
    return result, int(seen[0])


def test_a_64_mib_bytes_argument_is_not_copied_through_the_socket(pool: snakepit.Pool) -> None:
    data = b"\x07" * (64 * MIB)
    size, on_the_wire = _wire_bytes_of_arguments(pool, _tasks.size_of, data)
    assert size == len(data)
    assert on_the_wire < 4096  # the pickle and a block descriptor, not the data


@pytest.mark.parametrize("nbytes", [threshold_bytes(), 3 * MIB + 5, 17 * MIB])
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_large_bytes_like_arguments_arrive_whole_over_shared_memory(
    pool: snakepit.Pool, kind: str, nbytes: int
) -> None:
    raw = bytes(range(256)) * (nbytes // 256) + b"\x01" * (nbytes % 256)
    value: Any = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(raw)}[kind]
    described, on_the_wire = _wire_bytes_of_arguments(pool, _tasks.describe_buffer, value)
    expected = _tasks.describe_buffer(value)
    assert described == expected
    assert on_the_wire < 4096


def test_a_small_bytearray_and_memoryview_still_travel(pool: snakepit.Pool) -> None:
    for value in (bytearray(b"abc"), memoryview(b"abc"), memoryview(bytearray(100))):
        assert pool.call(_tasks.describe_buffer, value) == _tasks.describe_buffer(value)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(MIB // 2, dtype=np.float64).reshape(-1, 8),
        np.arange(MIB, dtype=np.int32),
        np.arange(MIB // 4, dtype=np.int16)[::2],  # not contiguous: sent as its bytes
    ],
    ids=["2d-float64", "int32", "strided"],
)
def test_a_memoryview_keeps_its_format_and_shape(pool: snakepit.Pool, array: Any) -> None:
    view = memoryview(array)
    assert pool.call(_tasks.describe_buffer, view) == _tasks.describe_buffer(view)


def test_a_memoryview_result_survives_the_next_reply(pool: snakepit.Pool) -> None:
    first = pool.call(_tasks.make_view, 2 * MIB, 1)
    second = pool.call(_tasks.make_view, 2 * MIB, 2)
    assert isinstance(first, memoryview)
    assert not first.readonly
    assert set(first.tobytes()) == {1}
    assert set(second.tobytes()) == {2}


def test_a_bytearray_argument_is_snapshotted_at_submit(pool: snakepit.Pool) -> None:
    data = bytearray(b"\x03" * (2 * MIB))
    # Idempotent calls are copied at submit (a retry sends them again).
    future = pool.options(idempotent=True).submit(_tasks.describe_buffer, data)
    expected = _tasks.describe_buffer(data)
    data[:] = b"\x09" * len(data)
    assert future.result(60) == expected
