"""Cost of the event bus per event (read the figures as time per event).

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``telemetry``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.mark.parametrize(("case", "impl"), params("telemetry"))
def test_telemetry(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
