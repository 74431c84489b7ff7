"""One local Ray for all the backend tests (start-up costs seconds).

Package-scoped: it ends with tests/backends, because later test modules
check that the test process has no child processes (Ray's gcs and raylet are).

Bound to 127.0.0.1, no dashboard, no usage stats, a small object store;
the environment is set before ray is first imported. Tests that need Ray
take ``ray_session``; they skip (with the reason) only where ray is absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Before anything here can import ray (test modules import ray.exceptions too).
os.environ.update(RAY_ENV)


@pytest.fixture(scope="package")
def ray_session() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'snakepit-ml[ray]')")
    started = not ray.is_initialized()
    # A Ray of our own ("local"), with its own temp dir: ray.init() without an
    # address would join a cluster someone else runs on this machine (it reads
    # /tmp/ray/ray_current_cluster), and ours must not be joined by theirs.
    temp_dir = tempfile.mkdtemp(prefix=f"snakepit-tests-ray-{os.getpid()}-")
    if started:
        ray.init(
            address="local",
            _temp_dir=temp_dir,
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=128 * 1024 * 1024,
            log_to_driver=False,
        )
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
