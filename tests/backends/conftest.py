"""One local Ray for all the backend tests (start-up costs seconds), and a
simulated two-node cluster for the tests that need two nodes.

Package-scoped: it ends with tests/backends, because later test modules
check that the test process has no child processes (Ray's gcs and raylet are).

Bound to 127.0.0.1, no dashboard, no usage stats, a small object store;
the environment is set before ray is first imported. Tests that need Ray
take ``ray_session``; they skip (with the reason) only where ray is absent.
``two_nodes`` (module scope) stops the session's Ray, starts a head node and
a node B (``ray.cluster_utils.Cluster``, both on loopback) and, when it is
done, starts the session's Ray again for whoever comes next.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Before anything here can import ray (test modules import ray.exceptions too).
os.environ.update(RAY_ENV)


MIB = 1024 * 1024
LOCAL_RAY: dict[str, Any] = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "_node_ip_address": "127.0.0.1",
    "object_store_memory": 128 * MIB,
    "log_to_driver": False,
}
#: The temp dir of the session's Ray while ray_session runs one it started.
_SESSION: list[str] = []
#: The simulated cluster: the head (the driver's node) has 2 logical CPUs, node
#: B has 1 and the custom resource ``node_b`` (to pin hosts there). Small
#: object stores: two raylets share this machine.
HEAD_NODE: dict[str, Any] = {
    "num_cpus": 2,
    "node_ip_address": "127.0.0.1",
    "include_dashboard": False,
    "object_store_memory": 100 * MIB,
}
NODE_B: dict[str, Any] = {
    "num_cpus": 1,
    "resources": {"node_b": 1},
    "node_ip_address": "127.0.0.1",
    "object_store_memory": 100 * MIB,
}


@dataclass
class TwoNodes:
    """A running two-node ``Cluster`` this process is connected to."""

    ray: Any
    cluster: Any
    node_b: Any
    head_id: str
    node_b_id: str


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    """A head node and a node B on loopback, for one test module (bounded start)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'snakepit-ml[ray]')")
    from ray._common.utils import get_default_ray_temp_dir, reset_ray_address
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()  # one Ray per process: the session's comes back afterwards
    temp_dir = tempfile.mkdtemp(prefix="sp-ray2-")
    # Cluster writes its address there whatever temp_dir says, and fails on
    # a machine where no Ray ran before.
    os.makedirs(get_default_ray_temp_dir(), exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args={**HEAD_NODE, "temp_dir": temp_dir})
    # Cluster advertises itself in /tmp/ray/ray_current_cluster, where any
    # plain ray.init() on this machine would join it: take that down at once.
    reset_ray_address()
    try:
        node_b = cluster.add_node(**NODE_B)
        cluster.wait_for_nodes(timeout=60)
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        b_id = next(i for i, n in nodes.items() if n["Resources"].get("node_b"))
        head_id = ray.get_runtime_context().get_node_id()
        assert head_id != b_id
        assert len(nodes) == 2, nodes
        yield TwoNodes(ray, cluster, node_b, head_id, b_id)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if _SESSION:
            ray.init(_temp_dir=_SESSION[0], **LOCAL_RAY)


# Package scope: Ray's processes (gcs_server, raylet) are children of this
# process and must be gone before other packages' tests count children.
@pytest.fixture(scope="package")
def ray_session() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'snakepit-ml[ray]')")
    started = not ray.is_initialized()
    # A Ray of our own ("local"), with its own temp dir: ray.init() without an
    # address would join a cluster someone else runs on this machine (it reads
    # /tmp/ray/ray_current_cluster), and ours must not be joined by theirs.
    temp_dir = tempfile.mkdtemp(prefix=f"snakepit-tests-ray-{os.getpid()}-")
    if started:
        ray.init(_temp_dir=temp_dir, **LOCAL_RAY)
        _SESSION[:] = [temp_dir]
    try:
        yield ray
    finally:
        _SESSION.clear()
        if started and ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
