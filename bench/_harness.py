"""The pytest-benchmark runner of the catalogue in ``snakepit._bench.cases``.

Each ``bench/test_<suite>.py`` parametrises one test over
``params("<suite>")`` and hands each (case, implementation) to
:func:`measure`, which tags the benchmark with ``extra_info = {case, impl}``
(what ``bench/report.py`` reads back).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from snakepit._bench._model import HEAVY_ENV
from snakepit._bench.cases import SUITES, Case, Env, Impl

#: What this session skipped, and why: ``bench/conftest.py`` writes it into
#: the ``--benchmark-json`` file (``skipped``), where ``bench/report.py`` reads it.
SKIPPED: list[dict[str, str]] = []


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
