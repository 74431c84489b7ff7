"""``Pool(backend="ray")`` against raw Ray actors and tasks, in one Ray session.

No-op round trip, a fresh 100 MiB argument (host on the caller's node) and
crash to the next good call (against Ray's own actor restart). Ray, when
installed, starts once for this module, bound to loopback, and is shut down
with it; every case is skipped, with the reason, where ray or the Ray
backend is missing.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``ray``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from bench._harness import measure, params
from snakepit._bench.cases import Case, Env, Impl


@pytest.fixture(scope="module", autouse=True)
def _no_ray_left_by_the_tests() -> None:
    """The bench starts its own Ray (on loopback, checked): stop one the tests left."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.mark.parametrize(("case", "impl"), params("ray"))
def test_ray(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)
