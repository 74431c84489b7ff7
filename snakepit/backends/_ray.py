"""``RayBackend``: how a ``Pool(backend=...)`` uses Ray (configuration, start).

Ray is imported here, inside functions, never at module import: ``import
snakepit`` and ``import snakepit.backends`` work without ray installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from snakepit.pool._pool import Pool

from ._ray_env import import_ray

__all__ = ["RayBackend"]


@dataclass(frozen=True)
class RayBackend:
    """Run a pool's workers under snakepit supervisors inside Ray actors.

    Each *host* is a Ray actor (``max_restarts=0``, ``max_task_retries=0``:
    snakepit's own restart and retry policies are the only ones) that runs a
    local snakepit pool of ``workers_per_host`` worker processes; Ray places
    the hosts and carries calls to them. Crashes are classified by the
    host's supervisor as on one machine; a host or node that is lost is exit
    kind ``lost``. See the ``snakepit.backends`` package and docs/scale-out.md.

    Args:
        address: The Ray cluster to use when Ray is not initialised in this
            process yet (``None``: ``RAY_ADDRESS``, else a new local Ray bound
            to 127.0.0.1 without a dashboard, shut down with the pool).
        namespace: Ray namespace of the hosts (``None``: the job's).
        workers_per_host: Worker processes per host actor (a host's loss
            takes that many workers).
        num_cpus_per_worker: Logical CPUs each host reserves per worker (a
            host reserves ``workers_per_host`` times this; never Ray's 0-CPU
            default, which piles actors onto one node).
        actor_options: Passed to the host actors' ``.options()``: resources,
            ``scheduling_strategy``, ``runtime_env``, ``memory``... (snakepit's
            ``max_restarts``/``max_task_retries`` cannot be overridden).
        init_options: Passed to ``ray.init`` when the pool starts Ray itself.
        poll_interval: Seconds between the driver's checks of idle hosts
            (events, liveness, the timeout backstop).
        backstop: Seconds past a call's timeout (plus the pool's
            ``terminate_grace``) after which the driver kills a host that did
            not answer (the host enforces timeouts itself; this only catches
            a host that hangs).
        ship_sys_path: Hosts append the driver's ``sys.path`` entries that
            exist on their node, so functions named by module are importable
            there (on other machines install the code or use ``runtime_env``).
    """

    name: ClassVar[str] = "ray"

    address: str | None = None
    namespace: str | None = None
    workers_per_host: int = 1
    num_cpus_per_worker: float = 1.0
    actor_options: Mapping[str, Any] = field(default_factory=dict)
    init_options: Mapping[str, Any] = field(default_factory=dict)
    poll_interval: float = 1.0
    backstop: float = 5.0
    ship_sys_path: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.workers_per_host, bool) or not isinstance(self.workers_per_host, int):
            raise TypeError(f"workers_per_host must be an int, not {self.workers_per_host!r}")
        if self.workers_per_host < 1:
            raise ValueError("workers_per_host must be >= 1")
        if self.num_cpus_per_worker < 0:
            raise ValueError("num_cpus_per_worker must be >= 0")
        if self.poll_interval <= 0 or self.backstop < 0:
            raise ValueError("poll_interval must be > 0 and backstop >= 0")
        reserved = {"max_restarts", "max_task_retries", "max_retries"} & set(self.actor_options)
        if reserved:
            raise ValueError(
                f"actor_options may not set {sorted(reserved)}: snakepit owns restarts and retries"
            )

    def pool_class(self) -> type[Pool]:
        """The pool class that runs this backend (a ``snakepit.Pool`` subclass)."""
        from ._ray_pool import RayPool

        return RayPool

    def connect(self) -> bool:
        """Make sure Ray is initialised here; True when this call started it."""
        ray = import_ray()
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"log_to_driver": False, **self.init_options}
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            # "local": a new Ray, never one that happens to run on this machine.
            options.setdefault("address", "local")
            options.setdefault("include_dashboard", False)
            options.setdefault("_node_ip_address", "127.0.0.1")
        else:
            options["address"] = self.address
        ray.init(**options)
        return True

    def host_class(self) -> Any:
        """The host actor class, ``ray.remote(SnakepitHost)`` with snakepit's policies."""
        ray = import_ray()
        from ._host import SnakepitHost

        return ray.remote(max_restarts=0, max_task_retries=0)(SnakepitHost)

    def host_options(self, name: str) -> dict[str, Any]:
        """``.options()`` of one host actor."""
        options: dict[str, Any] = {
            "num_cpus": self.workers_per_host * self.num_cpus_per_worker,
            **self.actor_options,
            "name": name,
            "max_restarts": 0,
            "max_task_retries": 0,
            # run() of every worker plus drain/cancel/stats at the same time.
            "max_concurrency": 2 * self.workers_per_host + 8,
        }
        if self.namespace is not None:
            options["namespace"] = self.namespace
        return options
