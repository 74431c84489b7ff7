"""The optional peers of the catalogue: loky and Ray.

Neither is a dependency: an implementation that needs one names it in
``Impl.requires`` and is skipped, with the reason, where it is missing.
Both are imported only when a case runs.

Ray is always started on loopback (:data:`RAY_ENV` before the import,
:data:`RAY_INIT` for ``ray.init``), at most once per :class:`Env` (the bench
suite keeps its Ray cases in two modules, ``test_large`` and ``test_ray``, so
at most twice per session), and shut
down with it. :func:`check_loopback` refuses a session with a socket that
listens on, or talks to, anything but loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import psutil

from snakepit._bench import tasks
from snakepit._bench._model import GIB, WORKERS, BenchError, Env, Submit, warm

#: Set before ``import ray``: no usage report, and every listener on 127.0.0.1
#: (without the second, Ray 2.60 on Linux binds its gRPC servers to all
#: interfaces and advertises the routable address, ``_node_ip_address`` or not).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: Ray's object store: room for a 1 GiB argument and a 1 GiB result, twice, so
#: that nothing spills to disk (spilling would make Ray look slower than it is).
RAY_OBJECT_STORE = 4 * GIB
RAY_INIT: dict[str, Any] = {
    # A Ray of our own: without an address ray.init() joins a cluster that
    # happens to run on this machine (/tmp/ray/ray_current_cluster).
    "address": "local",
    "num_cpus": WORKERS,
    "_node_ip_address": "127.0.0.1",
    "include_dashboard": False,
    "log_to_driver": False,
    "object_store_memory": RAY_OBJECT_STORE,
    "configure_logging": True,
    "logging_level": "WARNING",
}
LOKY = ("loky",)
RAY = ("ray",)


# -------------------------------------------------------------------- loky


def loky_executor(workers: int = WORKERS) -> Any:
    """A new ``loky.ProcessPoolExecutor`` (its own, not the process-wide reusable one)."""
    import loky

    return loky.ProcessPoolExecutor(max_workers=workers, initializer=tasks.ignore_sigint)


@contextlib.contextmanager
def _warm_loky(workers: int) -> Iterator[Any]:
    executor = loky_executor(workers)
    try:
        warm(executor.submit, workers)
        yield executor
    finally:
        executor.shutdown(wait=True, kill_workers=True)


def env_loky(env: Env, workers: int = WORKERS) -> Any:
    """The warm loky executor of ``env`` with ``workers`` workers (shut down with it)."""
    return env.keep(f"loky-{workers}", lambda: _warm_loky(workers))


# --------------------------------------------------------------------- Ray


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _process_sockets() -> list[tuple[int, str, str, str]]:
    """``(pid, local ip, remote ip or "", status)`` of the inet sockets of this process tree."""
    found = []
    me = psutil.Process()
    for proc in (me, *me.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                local = conn.laddr.ip if conn.laddr else ""
                remote = conn.raddr.ip if conn.raddr else ""
                found.append((proc.pid, local, remote, conn.status))
    return found


def check_loopback(sockets: list[tuple[int, str, str, str]] | None = None) -> None:
    """Raise :class:`BenchError` if a socket of this process tree leaves loopback.

    A socket fails when it is bound to a non-loopback address (``0.0.0.0``
    included: it listens on every interface) or is connected to one.
    ``sockets`` defaults to the live ones.
    """
    bad = [
        (pid, local, remote)
        for pid, local, remote, _ in (_process_sockets() if sockets is None else sockets)
        if (local and not _is_loopback(local)) or (remote and not _is_loopback(remote))
    ]
    if bad:
        raise BenchError(f"sockets off loopback (pid, local, remote): {bad}")


class RaySession:
    """A started Ray: ``submit(fn, *args)`` like an executor, ``call`` for the timed path."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._remotes: dict[Callable[..., Any], Any] = {}

    def remote(self, fn: Callable[..., Any]) -> Any:
        """``ray.remote(fn)``, made once per function (no retry: a failure is a failure)."""
        if fn not in self._remotes:
            self._remotes[fn] = self.ray.remote(max_retries=0)(fn)
        return self._remotes[fn]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` as a Ray task and wait for its result (``ray.get``)."""
        return self.ray.get(self.remote(fn).remote(*args))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` as a Ray task; a ``concurrent.futures.Future`` of its result."""
        future: Future[Any] = self.remote(fn).remote(*args).future()
        return future


@contextlib.contextmanager
def ray_session() -> Iterator[RaySession]:
    """Start Ray on loopback, warm both workers, yield it; shut it down on exit."""
    os.environ.update(RAY_ENV)
    import ray

    if ray.is_initialized():
        raise BenchError("Ray is already initialised in this process: not one the bench started")
    ray.init(**RAY_INIT)
    try:
        session = RaySession(ray)
        submit: Submit = session.submit
        warm(submit, WORKERS)
        check_loopback()
        yield session
    finally:
        ray.shutdown()


def env_ray(env: Env) -> RaySession:
    """The Ray session of ``env``, started on first use."""
    session: RaySession = env.keep("ray", ray_session)
    return session
