"""Hardware detection cost: ``hardware.detect()`` cold and cached.

The cases, their peers and targets are in ``snakepit._bench.cases`` (suite
``hardware``); ``bench/report.py`` turns a ``--benchmark-json`` file into ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench._harness import measure, params
from snakepit import hardware
from snakepit._bench.cases import SUITES, Case, Env, Impl
from snakepit._bench.run import median_seconds


@pytest.mark.parametrize(("case", "impl"), params("hardware"))
def test_hardware(benchmark: Any, env: Env, case: Case, impl: Impl) -> None:
    measure(benchmark, env, case, impl)


def _target(case: str) -> float:
    limit = next(case_.targets[0].limit for case_ in SUITES["hardware"] if case_.name == case)
    assert limit is not None
    return limit


# The targets are checked with plain timers too, so they hold with --benchmark-disable.


def test_cold_detect_meets_its_target() -> None:
    hardware.clear_cache()
    try:
        found = hardware.detect()
        median = median_seconds(hardware.detect, 15, warmup=0, setup=hardware.clear_cache)
    finally:
        hardware.clear_cache()
    if found.gpu_count == 0:  # NVML and the vendor tools cost more where GPUs exist
        assert median < _target("detect-cold"), f"cold detect() took {1e3 * median:.1f} ms"


def test_cached_detect_meets_its_target() -> None:
    hardware.clear_cache()
    try:
        hardware.detect()
        median = median_seconds(hardware.detect, 2000, warmup=0)
    finally:
        hardware.clear_cache()
    assert median < _target("detect-cached"), f"cached detect() took {1e6 * median:.2f} us"


_PRINT_IDENTITY = (
    "import json, snakepit.hardware as h; print(json.dumps(h.identity(), sort_keys=True), end='')"
)


def test_identity_is_byte_identical_across_processes() -> None:
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _PRINT_IDENTITY],
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1]
    assert outputs[0] == json.dumps(hardware.identity(), sort_keys=True).encode()
    assert json.loads(outputs[0])["platform"]["system"]
