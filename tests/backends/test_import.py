"""``import snakepit`` (and its backends package) never imports ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

import snakepit
from snakepit.backends import RayBackend
from snakepit.pool._backends import resolve


def test_import_snakepit_does_not_import_ray() -> None:
    code = (
        "import sys, snakepit, snakepit.backends, snakepit.pool\n"
        "snakepit.Pool; snakepit.backends.RayBackend(workers_per_host=2)\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_host_options_keep_ray_policies_off() -> None:
    options = RayBackend(workers_per_host=2, num_cpus_per_worker=0.5).host_options("h")
    assert options["max_restarts"] == 0
    assert options["max_task_retries"] == 0
    assert options["num_cpus"] == 1.0
    with pytest.raises(ValueError, match="max_restarts"):
        RayBackend(actor_options={"max_restarts": 3})


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown backend 'spark'"):
        snakepit.Pool(1, backend="spark")
    with pytest.raises(TypeError, match="backend must be"):
        resolve(42)
    assert resolve(RayBackend(workers_per_host=3)).pool_class().__name__ == "RayPool"
