"""A shape error whose message lacks full shapes gets the call's array shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit.errors import ShapeError
from snakepit.errors._remote import attach_argument_shapes, exception_to_record


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1) as pool:
        yield pool


@pytest.mark.parametrize(
    ("a", "b"),
    [((3, 4), (2, 2)), ((5, 7), (6, 1)), ((2, 3, 4), (2, 5, 6)), ((8, 1), (3, 9))],
)
def test_matmul_shape_errors_name_both_operands(
    pool: snakepit.Pool, a: tuple[int, ...], b: tuple[int, ...]
) -> None:
    with pytest.raises(ShapeError) as info:
        pool.call(np.matmul, np.ones(a), np.ones(b))
    error = info.value
    assert (error.shape_a, error.shape_b) == (a, b)
    assert error.shapes[:2] == (a, b)
    assert isinstance(error, ValueError)


def test_shapes_the_message_already_names_are_kept(pool: snakepit.Pool) -> None:
    # numpy names full shapes for broadcasting: the message is enough.
    with pytest.raises(ShapeError) as info:
        pool.call(np.add, np.ones((3, 4)), np.ones((5,)))
    assert (info.value.shape_a, info.value.shape_b) == ((3, 4), (5,))


def _record_of(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        fn(*args)
    except Exception as exc:
        return exception_to_record(exc)
    raise AssertionError("did not raise")


def test_only_shape_errors_with_two_arrays_get_argument_shapes() -> None:
    record = _record_of(np.matmul, np.ones((3, 4)), np.ones((2, 2)))
    attach_argument_shapes(record, (np.ones((3, 4)), "x", np.ones((2, 2))), {})
    assert record["context"]["argument_shapes"] == [[3, 4], [2, 2]]
    one = _record_of(np.matmul, np.ones((3, 4)), np.ones((2, 2)))
    attach_argument_shapes(one, (np.ones((3, 4)),), {})
    assert "argument_shapes" not in one["context"]
    other = _record_of(int, "not a number")
    attach_argument_shapes(other, (np.ones(2), np.ones(3)), {})
    assert "argument_shapes" not in other["context"]


def test_odd_shape_attributes_are_ignored() -> None:
    class Odd:
        shape = ("a", 1)

    record = _record_of(np.matmul, np.ones((3, 4)), np.ones((2, 2)))
    attach_argument_shapes(record, (Odd(), np.ones((3, 4))), {"b": np.ones((2, 2))})
    assert record["context"]["argument_shapes"] == [[3, 4], [2, 2]]
