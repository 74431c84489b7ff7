"""The pytest-benchmark runner of the catalogue in ``snakepit._bench.cases``.

Each ``bench/test_<suite>.py`` parametrises one test over
``params("<suite>")`` and hands each (case, implementation) to
:func:`measure`, which tags the benchmark with ``extra_info = {case, impl}``
(what ``bench/report.py`` reads back).

A case with ``interleave`` set is timed once, all of its implementations
in turn (:mod:`snakepit._bench._interleave`), when the first of them comes
up; each implementation's test then hands its recorded rounds to
pytest-benchmark, whose statistics and JSON are as for any other test.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from snakepit._bench._interleave import Rounds, interleavable, interleaved
from snakepit._bench._model import HEAVY_ENV
from snakepit._bench.cases import SUITES, Case, Env, Impl

#: What this session skipped, and why: ``bench/conftest.py`` writes it into
#: the ``--benchmark-json`` file (``skipped``), where ``bench/report.py`` reads it.
SKIPPED: list[dict[str, str]] = []
#: Rounds of interleaved cases not yet handed to their test, by (case, impl).
_RECORDED: dict[tuple[str, str], Rounds] = {}


def params(suite: str) -> list[Any]:
    """One parameter per case and implementation of ``suite`` (never-run peers left out)."""
    return [
        pytest.param(case, impl, id=f"{case.name}-{impl.impl}")
        for case in SUITES[suite]
        for impl in case.impls
        if impl.skip is None
    ]


def skip_reason(case: Case, impl: Impl, timing: bool) -> str | None:
    """Why ``impl`` of ``case`` does not run in this session (``timing``: benchmarks on)."""
    if case.heavy and not timing and os.environ.get(HEAVY_ENV) != "1":
        return f"heavy case: runs when benchmarks are timed (make bench) or with {HEAVY_ENV}=1"
    reason = case.skip() if case.skip is not None else None
    return impl.missing() if reason is None else reason


def measure(benchmark: Any, env: Env, case: Case, impl: Impl) -> Any:
    """Time ``impl`` of ``case`` with ``benchmark.pedantic``; check and return its result."""
    reason = skip_reason(case, impl, timing=not benchmark.disabled)
    if reason is not None:
        SKIPPED.append({"case": case.name, "impl": impl.impl, "reason": reason})
        pytest.skip(reason)
    benchmark.group = case.group or case.name
    benchmark.extra_info.update(case=case.name, impl=impl.impl)
    if case.nbytes is not None:
        benchmark.extra_info["nbytes"] = case.nbytes
    if case.workers is not None:
        benchmark.extra_info["workers"] = case.workers
    if not benchmark.disabled:
        record = _recorded(env, case, impl)
        if record is not None:
            _replay(benchmark, record)
            if record.metrics:
                benchmark.extra_info["metrics"] = record.metrics
            benchmark.extra_info["interleaved"] = True
            return None
    with impl.prepare(env) as timed:
        result = benchmark.pedantic(
            timed.fn,
            args=timed.args,
            setup=timed.setup,
            rounds=timed.rounds,
            warmup_rounds=timed.warmup,
            iterations=timed.iterations,
        )
        if timed.check is not None:
            timed.check(result)
        if timed.metrics is not None:
            benchmark.extra_info["metrics"] = timed.metrics()
    return result


def _recorded(env: Env, case: Case, impl: Impl) -> Rounds | None:
    """``impl``'s interleaved rounds of ``case`` (timing them all first), or None if it has none."""
    key = (case.name, impl.impl)
    if key not in _RECORDED:
        runnable = [i for i in case.impls if skip_reason(case, i, timing=True) is None]
        together = interleavable(case, runnable)
        if impl not in together:
            return None
        records = interleaved(case, together, env, lambda t: t.rounds, lambda t: t.iterations)
        _RECORDED.update(((case.name, name), record) for name, record in records.items())
    return _RECORDED.pop(key)


def _replay(benchmark: Any, record: Rounds) -> None:
    """Give pytest-benchmark ``record``'s round durations as if it had timed them.

    pytest-benchmark reads its clock twice a round (start, end); this clock
    steps by each recorded duration in turn.
    """
    durations = iter(record.durations)
    now = [0.0, False]  # time, and whether the next reading ends a round

    def replayed_rounds() -> float:
        if now[1]:
            now[0] = float(now[0]) + next(durations)
        now[1] = not now[1]
        return float(now[0])

    benchmark._timer = replayed_rounds
    benchmark.pedantic(
        _nothing, rounds=len(record.durations), iterations=record.iterations, warmup_rounds=0
    )


def _nothing() -> None:
    """What a replayed round runs (its time comes from the record)."""
