"""Calls and results around the compact frames (``protocol.pack_call`` and
``pack_result``): what takes them and what does not arrives the same."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit._wire._bulk import OUT_OF_BAND_BYTES
from tests.pool import _tasks


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, timeout=60) as executor:
        yield executor


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        OUT_OF_BAND_BYTES - 64,
        OUT_OF_BAND_BYTES,
        OUT_OF_BAND_BYTES + 64,
        4 * OUT_OF_BAND_BYTES,
    ],
)
def test_arguments_of_every_size_around_the_out_of_band_threshold(
    pool: snakepit.Pool, size: int
) -> None:
    text = "x" * size
    assert pool.call(_tasks.identity, text) == text  # the first call also sends the function
    assert pool.call(_tasks.size_of, text) == size
    assert pool.call(_tasks.identity, value=text) == text


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**63,
        -(2**63) - 1,
        -(2**70),
        0.0,
        -0.0,
        5e-324,
        1e308,
        math.inf,
        -math.inf,
        True,
        False,
        1j,
        "",
        "é",
        np.float64(2.5),
        np.int64(3),
    ],
)
def test_scalar_results_arrive_as_sent(pool: snakepit.Pool, value: Any) -> None:
    back = pool.call(_tasks.identity, value)
    assert type(back) is type(value)
    assert back == value
    if isinstance(value, float):
        assert math.copysign(1.0, back) == math.copysign(1.0, value)


def test_a_nan_result_is_a_nan(pool: snakepit.Pool) -> None:
    assert math.isnan(pool.call(_tasks.identity, math.nan))


def test_keywords_and_no_arguments_take_the_same_worker(pool: snakepit.Pool) -> None:
    pid = pool.call(_tasks.pid)
    assert pool.call(_tasks.add, 2, b=3) == 5
    assert pool.call(_tasks.pid) == pid
    assert pool.submit(_tasks.add, 1, 1).result(timeout=30) == 2  # a reader-thread reply


def test_an_error_reply_after_compact_calls_is_the_error(pool: snakepit.Pool) -> None:
    with pytest.raises(ValueError, match="initializer refuses"):
        pool.call(_tasks.always_raise)
    assert pool.call(_tasks.identity, None) is None
