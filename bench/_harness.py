"""The pytest-benchmark runner of the catalogue in ``snakepit._bench.cases``.

Each ``bench/test_<suite>.py`` parametrises one test over
``params("<suite>")`` and hands each (case, implementation) to
:func:`measure`, which tags the benchmark with ``extra_info = {case, impl}``
(what ``bench/report.py`` reads back).
"""

from __future__ import annotations

from typing import Any

import pytest

from snakepit._bench.cases import SUITES, Case, Env, Impl


def params(suite: str) -> list[Any]:
    """One parameter per case and implementation of ``suite`` (never-run peers left out)."""
    return [
        pytest.param(case, impl, id=f"{case.name}-{impl.impl}")
        for case in SUITES[suite]
        for impl in case.impls
        if impl.skip is None
    ]


def measure(benchmark: Any, env: Env, case: Case, impl: Impl) -> Any:
    """Time ``impl`` of ``case`` with ``benchmark.pedantic``; check and return its result."""
    reason = case.skip() if case.skip is not None else None
    if reason is None:
        reason = impl.missing()
    if reason is not None:
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
    return result
