"""Payloads that travel inline cost time linear in their size.

A frame path that reallocates or zero-fills the rest of a frame on every
``recv`` is quadratic: 4x the bytes costs 16x the time. Each case times the
same round trip at 16 MiB and at 64 MiB in one run, interleaved, and asserts
the ratio of the fastest of each (no absolute time is asserted).

The receiver must build a new object of the payload's size, and that alone
is not linear across these sizes: glibc serves 16 MiB from warm heap memory
but maps 64 MiB fresh (its mmap threshold stops growing at 32 MiB), and
faulting fresh pages in costs more than the copy (about 10x for 4x the
bytes on this machine class). That floor, one copy into a new object,
measured in the same run, is taken off both sides before the ratio.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit._core import bytes_copy
from snakepit._wire import protocol
from tests.pool import _tasks

MIB = 1 << 20
SMALL, LARGE = 16 * MIB, 64 * MIB
#: Linear growth gives 4x; quadratic gives 16x. Measured here: 2.7-4.4x in
#: a quiet process, up to 5.6x late in the full suite (page-fault costs vary
#: with the machine's memory state), so the bound leaves room for that.
MAX_RATIO = 6.0
ROUNDS = 8


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1, timeout=120) as executor:
        yield executor


def _fastest(run: Callable[[int], None]) -> dict[int, float]:
    best = {SMALL: float("inf"), LARGE: float("inf")}
    run(SMALL)  # warm the worker and the allocator
    for _ in range(ROUNDS):
        for nbytes in (SMALL, LARGE):
            started = time.perf_counter()
            run(nbytes)
            best[nbytes] = min(best[nbytes], time.perf_counter() - started)
    return best


_SOURCES = {n: bytearray(n) for n in (SMALL, LARGE)}


def _materialise(nbytes: int) -> None:
    """The floor: one copy of the payload into a new object."""
    assert len(bytes_copy(_SOURCES[nbytes])) == nbytes


def _ratio(run: Callable[[int], None], attempts: int = 5) -> float:
    """(LARGE - floor) / (SMALL - floor), fastest rounds, interleaved.

    Measured again (up to ``attempts`` times) while above the bound: a busy
    machine can slow one measurement, but quadratic cost (16x) shows in all.
    """
    best = float("inf")
    for _ in range(attempts):
        trip = _fastest(run)
        floor = _fastest(_materialise)
        best = min(best, (trip[LARGE] - floor[LARGE]) / (trip[SMALL] - floor[SMALL]))
        if best <= MAX_RATIO:
            break
    return best


def test_bytes_argument_is_linear(pool: snakepit.Pool) -> None:
    payloads = {n: b"\x02" * n for n in (SMALL, LARGE)}

    def run(nbytes: int) -> None:
        assert pool.call(_tasks.size_of, payloads[nbytes]) == nbytes

    assert _ratio(run) <= MAX_RATIO


def test_bytes_result_is_linear(pool: snakepit.Pool) -> None:
    def run(nbytes: int) -> None:
        result = pool.call(_tasks.make_bytes, nbytes)
        assert type(result) is bytes
        assert len(result) == nbytes
        assert result[-1] == 1

    assert _ratio(run) <= MAX_RATIO


def test_str_argument_is_linear(pool: snakepit.Pool) -> None:
    payloads = {n: "é" * (n // 2) for n in (SMALL, LARGE)}

    def run(nbytes: int) -> None:
        assert pool.call(_tasks.size_of, payloads[nbytes]) == nbytes // 2

    assert _ratio(run) <= MAX_RATIO


def test_small_arrays_argument_is_linear(pool: snakepit.Pool) -> None:
    # 512 KiB each: every one is below the shared-memory threshold.
    elements = (512 << 10) // 4
    payloads = {
        n: [np.full(elements, i, dtype=np.float32) for i in range(n // (512 << 10))]
        for n in (SMALL, LARGE)
    }

    def run(nbytes: int) -> None:
        assert pool.call(_tasks.size_of, payloads[nbytes]) == nbytes

    assert _ratio(run) <= MAX_RATIO


def test_small_arrays_result_is_linear(pool: snakepit.Pool) -> None:
    elements = (512 << 10) // 4

    def run(nbytes: int) -> None:
        result: list[Any] = pool.call(_tasks.make_arrays, nbytes // (512 << 10), elements)
        assert len(result) == nbytes // (512 << 10)
        assert float(result[-1][-1]) == len(result) - 1
        assert not snakepit.is_shared(result[0])

    assert _ratio(run) <= MAX_RATIO


def test_inline_values_arrive_intact(pool: snakepit.Pool) -> None:
    """Out-of-band parts land in the right places, in every mix and size."""
    rng = np.random.default_rng(1)
    value = {
        "blob": rng.bytes(3 * MIB + 7),
        "small": b"tiny",
        "arrays": [rng.random(n) for n in (10, 70_000, 100_000)],
        "nested": (rng.bytes(65_536), [rng.bytes(65_535)]),
        "text": "x" * (2 * MIB),
    }
    echoed = pool.call(_tasks.identity, value)
    assert echoed["blob"] == value["blob"]
    assert echoed["small"] == b"tiny"
    for got, sent in zip(echoed["arrays"], value["arrays"], strict=True):
        assert np.array_equal(got, sent)
        assert got.flags.writeable
    assert echoed["nested"] == value["nested"]
    assert echoed["text"] == value["text"]


def test_argument_is_a_snapshot_taken_at_submit(pool: snakepit.Pool) -> None:
    """Changing an array after submit does not change what the worker gets."""
    array = np.zeros(100_000)  # 800 KB: inline, out of band
    with snakepit.Pool(workers=1) as busy:
        blocker = busy.submit(time.sleep, 0.3)
        future = busy.submit(_tasks.total, array)
        array += 1.0
        blocker.result(10)
        assert future.result(10) == 0.0


def test_argument_sent_at_once_is_not_changed_by_the_caller_after_submit(
    pool: snakepit.Pool,
) -> None:
    # Given to an idle worker, the arrays go out before submit returns,
    # uncopied: a change made after that does not reach the worker.
    for elements in (5_000, 50_000, 130_000):  # 40 KB to 1 MB: all inline
        array = np.zeros(elements, dtype=np.float64)
        future = pool.submit(_tasks.slow_total, array, 0.1)
        array += 1.0
        assert future.result(10) == 0.0


def test_retried_call_gets_the_arguments_of_its_first_attempt(
    pool: snakepit.Pool, tmp_path: Path
) -> None:
    # A retry sends the arguments again, after the caller may have changed
    # them: an idempotent call's arrays are copied at submit.
    array = np.zeros(100_000)  # 800 KB: inline
    with snakepit.Pool(workers=1) as retrying:
        future = retrying.options(idempotent=True).submit(
            _tasks.total_unless_first, str(tmp_path / "marker"), array
        )
        array += 1.0
        assert future.result(30) == 0.0


def test_queued_call_behind_a_session_gets_its_snapshot(pool: snakepit.Pool) -> None:
    # The session's worker is busy, another is idle: the call still waits.
    array = np.zeros(100_000)  # 800 KB: inline
    with snakepit.Pool(workers=2) as sessions:
        session = sessions.options(session="s")
        blocker = session.submit(time.sleep, 0.3)
        future = session.submit(_tasks.total, array)
        array += 1.0
        blocker.result(10)
        assert future.result(10) == 0.0


def test_large_replies_reuse_warm_frame_memory(
    pool: snakepit.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large frame lands in an anonymous mapping; the reader keeps it for the
    # next frame once nothing refers to it. Fresh mappings cost a page fault
    # per page, more than the copy itself, so each reply must not take one.
    real_mmap = mmap.mmap
    fresh: list[int] = []

    def counting_mmap(*args: Any, **kwargs: Any) -> mmap.mmap:
        fresh.append(1)
        return real_mmap(*args, **kwargs)

    monkeypatch.setattr(protocol.mmap, "mmap", counting_mmap)
    for _ in range(20):
        assert len(pool.call(_tasks.make_bytes, MIB)) == MIB
    assert len(fresh) <= 2


@pytest.mark.parametrize(
    "value",
    [None, 7, 2.5, "short", "s" * (1 << 20), "é" * (1 << 19)],
    ids=["none", "int", "float", "short-str", "str-1MiB", "str-wide"],
)
def test_scalar_results_of_every_size_come_back(pool: snakepit.Pool, value: Any) -> None:
    # Small ones skip the encoder (codec.scalar_blob); large ones go its way.
    assert pool.call(_tasks.identity, value) == value
