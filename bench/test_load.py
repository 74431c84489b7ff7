"""Small calls under stress: spin_seconds idle and loaded, object-heavy arguments, throughput.

A million small dicts as an argument (against plain pickle), and 20,000
no-op calls from 4 threads (calls/s and p99, against ProcessPoolExecutor).

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``load``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("load"))
def test_load(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
