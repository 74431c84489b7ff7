"""Payloads that travel inline (in the frame, not through shared memory).

How the cost grows with size is checked without timing in
``tests/pool/test_pool_inline.py``.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``inline``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("inline"))
def test_inline(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
