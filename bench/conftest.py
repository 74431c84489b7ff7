"""The executors the benchmark cases share, one set per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench._harness import SKIPPED
from snakepit._bench.cases import Env


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Add what the session skipped, with the reasons, to the ``--benchmark-json`` file."""
    output_json["skipped"] = list(SKIPPED)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """Warm pools and peer executors, made on first use, shut down after the module."""
    shared = Env()
    try:
        yield shared
    finally:
        shared.close()
