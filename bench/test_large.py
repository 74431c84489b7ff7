"""1 GiB arguments: a fresh array and the echo of a shared one, against the copy floor and Ray.

Heavy (they run under ``--benchmark-only``, or with ``SNAKEPIT_BENCH_HEAVY=1``).
Ray, when installed, starts once, here (and once in ``test_ray.py``),
bound to loopback, and is shut down with the module.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``large``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("large"))
def test_large(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
