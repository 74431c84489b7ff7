"""Shared-memory allocation (arena vs SharedMemory) and copy-in (share vs np.copyto).

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``zero_copy``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("zero_copy"))
def test_zero_copy(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
