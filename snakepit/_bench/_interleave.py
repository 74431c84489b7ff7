"""Interleaved rounds: snakepit and its peers or floors timed turn about, in one loop.

A ratio of two medians measured one after the other moves with the load of
a shared machine (the pipe floor swung 22-52 us within a minute). Cases with
``Case.interleave`` set are timed here instead: every implementation is
prepared at once, then blocks of ``interleave`` rounds run in turn (A, B, A,
B, ...), so a load change falls on all sides alike. An implementation with
``Impl.alone`` (Ray, say: its memory and processes) is left to the usual
one-after-the-other timing.

After a switch, ``settle`` untimed calls run first (only with blocks of more
than one round): a worker that spins after its answer, or caches warmed by
the other side, would otherwise be charged to the next one's first round.

Both runners use it: ``snakepit bench`` (:mod:`snakepit._bench.run`) and the
pytest-benchmark suite (``bench/_harness.py``, which replays the recorded
rounds into pytest-benchmark's statistics).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from snakepit._bench._model import Case, Env, Impl, Timed

__all__ = ["Rounds", "interleavable", "interleaved", "run_interleaved"]


@dataclass
class Rounds:
    """What one implementation recorded: each round's duration (seconds, whole round)."""

    impl: str
    iterations: int
    durations: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def per_call(self) -> list[float]:
        """Each round's duration divided by its calls."""
        return [d / self.iterations for d in self.durations]


def _one_round(timed: Timed, iterations: int) -> float:
    if timed.setup is not None:
        timed.setup()
    call, args = timed.fn, timed.args
    if iterations == 1:
        started = time.perf_counter()
        result = call(*args)
        elapsed = time.perf_counter() - started
        if timed.check is not None:
            timed.check(result)
        del result  # a 1 GiB echo must not outlive its round
        return elapsed
    loop = range(iterations)
    started = time.perf_counter()
    for _ in loop:
        call(*args)
    return time.perf_counter() - started


def run_interleaved(
    timeds: Sequence[tuple[str, Timed]],
    rounds_of: Callable[[Timed], int],
    iterations_of: Callable[[Timed], int],
    block: int,
) -> list[Rounds]:
    """Time every ``(impl, timed)`` in turn, ``block`` rounds at a time.

    Each gets its own number of rounds (``rounds_of``); one that has had
    them drops out while the others go on. Warm-up rounds run first, in
    turn too; with ``block > 1`` one untimed call settles each switch.
    """
    if block < 1:
        raise ValueError("block must be >= 1")
    records = [Rounds(impl, iterations_of(timed)) for impl, timed in timeds]
    for (_, timed), record in zip(timeds, records, strict=True):
        for _ in range(timed.warmup):
            _one_round(timed, record.iterations)
    left = [rounds_of(timed) for _, timed in timeds]
    while any(left):
        for index, ((_, timed), record) in enumerate(zip(timeds, records, strict=True)):
            if not left[index]:
                continue
            if block > 1 and len(timeds) > 1:
                _one_round(timed, 1)  # settle: see the module docstring
            for _ in range(min(block, left[index])):
                record.durations.append(_one_round(timed, record.iterations))
            left[index] -= min(block, left[index])
    for (_, timed), record in zip(timeds, records, strict=True):
        if timed.metrics is not None:
            record.metrics = timed.metrics()
    return records


def interleaved(
    case: Case,
    impls: Sequence[Impl],
    env: Env,
    rounds_of: Callable[[Timed], int],
    iterations_of: Callable[[Timed], int],
) -> dict[str, Rounds]:
    """Prepare every one of ``impls`` of ``case`` at once and time them interleaved."""
    with contextlib.ExitStack() as stack:
        timeds = [(impl.impl, stack.enter_context(impl.prepare(env))) for impl in impls]
        records = run_interleaved(timeds, rounds_of, iterations_of, case.interleave)
    return {record.impl: record for record in records}


def interleavable(case: Case, impls: Sequence[Impl]) -> list[Impl]:
    """The implementations of ``case`` timed together (not ``alone``); [] when fewer than 2."""
    if case.interleave < 1:
        return []
    chosen = [impl for impl in impls if not impl.alone]
    return chosen if len(chosen) > 1 else []
