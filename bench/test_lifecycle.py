"""Pool start-up and crash recovery: snakepit.Pool against ProcessPoolExecutor and loky.

Each snakepit side takes Pool keyword arguments: the ``preload`` variants
appear once ``Pool(preload=[...])`` exists.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``lifecycle``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("lifecycle"))
def test_lifecycle(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
