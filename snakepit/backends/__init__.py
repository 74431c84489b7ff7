"""Backends: where a :class:`snakepit.Pool`'s workers run (see docs/scale-out.md).

``Pool(..., backend="local")`` (the default) runs workers as children of this
process. ``Pool(..., backend="ray")`` or ``Pool(..., backend=RayBackend(...))``
runs them on a Ray cluster, with the same calls, options and errors::

    from snakepit.backends import RayBackend

    with snakepit.Pool(4, backend=RayBackend(workers_per_host=2)) as pool:
        pool.options(timeout=5, idempotent=True).call(fn, x)

Nothing here imports ray until a Ray pool is made (``import snakepit``
never does).

The seam, for whoever extends it:

* ``snakepit/pool/_backends.py``: ``Pool.__new__`` asks a backend object for
  its pool class (``backend.pool_class()``), a subclass of ``Pool``; names map
  to backend classes in ``NAMED``. The local pool's path is untouched.
* ``_ray.py`` (:class:`RayBackend`): configuration, ``ray.init`` (loopback,
  no dashboard, no usage stats), the host actor's options (``max_restarts=0``,
  ``max_task_retries=0``: snakepit's policies are the only ones).
* ``_host.py`` (``SnakepitHost``): the Ray actor on each node. It runs a
  *local* snakepit pool: ``waitpid`` crash classification, timeouts, worker
  restarts, idempotent retries after a worker crash, sessions, memory limits
  all stay the single-machine code. Its wire records are in its docstring.
* ``_ray_pool.py`` (``RayPool``): the driver: queue, host choice and
  session pinning, circuit breaker, health, retries after a host loss
  (``exit_kind="lost"``), host replacement with the restart backoff,
  telemetry (host events re-emitted here with ``node_id``).
* ``_ray_hosts.py``: host/call records, the same-node handshake probe, event
  re-emission.
* ``_ray_errors.py`` (:func:`classify_ray_error`): every Ray exception to a
  snakepit error, by class name (tested with fake classes, no ray needed).

Data: a host whose node is the driver's and which mapped the driver's
probe array (the handshake) gets arguments as shared-memory descriptors
(``codec``) and answers the same way; any other host gets Python objects
that Ray carries (``("ray", ...)`` records in ``RayPool._send`` and
``SnakepitHost.run``): that branch is where the cross-node ObjectRef path goes.
"""

from __future__ import annotations

from ._ray import RayBackend
from ._ray_errors import classify_ray_error

__all__ = ["RayBackend", "classify_ray_error"]
