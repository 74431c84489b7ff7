"""The executors the benchmark cases share, one set per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from snakepit._bench.cases import Env


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """Warm pools and peer executors, made on first use, shut down after the module."""
    shared = Env()
    try:
        yield shared
    finally:
        shared.close()
