"""Ray's exceptions, translated into snakepit's hierarchy in one place.

The Ray backend never raises a Ray exception to a caller: whatever Ray
raised while a call travelled to or from its host goes through
:func:`classify_ray_error`, and the Ray exception is kept as the result's
``__cause__``. Matching is by class *name* along the exception's MRO, so
this module never imports ray and the table is tested with fake classes.

Ray cannot say why a process died (an ``ActorDiedError`` carries a message
and two booleans, nothing more), so a dead host is exit kind ``lost``
(:func:`snakepit.pool._exits.classify_lost`); deaths of the workers under it
are classified by the host's own supervisor, by ``waitpid``, and never reach
this module.
"""

from __future__ import annotations

from snakepit.errors import (
    CallCancelledError,
    SerializationError,
    SharedMemoryExhaustedError,
    SnakepitError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    WorkerUnavailableError,
)
from snakepit.pool._exits import classify_lost

__all__ = ["classify_ray_error", "is_host_loss"]

#: Ray exceptions that mean the host actor (or its node) is gone, or may be.
_LOST = (
    "ActorDiedError",
    "ActorUnavailableError",
    "RayActorError",
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "OwnerDiedError",
)
#: Text Ray's memory monitor puts in the errors of what it killed.
_MEMORY_PRESSURE = ("killed due to memory pressure", "OutOfMemoryError", "memory monitor")


def _names(exc: BaseException) -> list[str]:
    return [cls.__name__ for cls in type(exc).__mro__]


def is_host_loss(error: BaseException) -> bool:
    """Whether ``error`` (a translated one) says the host was lost."""
    return (
        isinstance(error, WorkerCrashedError)
        and error.exit_kind in ("lost", "killed")
        and (error.signal is None and error.exit_code is None)
    )


def classify_ray_error(
    exc: BaseException, *, worker_id: int | None = None, node_id: str | None = None
) -> SnakepitError:
    """The snakepit error for a Ray exception met on the way to or from a host.

    ``worker_id``: the pool slot the call was on; ``node_id``: the host's node.
    The Ray exception is chained as ``__cause__``; its text, when it helps,
    is a note.

    * ``ActorDiedError``, ``ActorUnavailableError``, ``RayActorError``,
      ``WorkerCrashedError``, ``NodeDiedError``, ``OwnerDiedError``,
      ``LocalRayletDiedError``, ``ObjectLostError`` and its kin:
      ``WorkerCrashedError(exit_kind="lost")`` (``killed`` with OOM wording when
      Ray's memory monitor did it; a note for a preempted node);
    * ``ObjectStoreFullError``, ``OutOfDiskError``: ``SharedMemoryExhaustedError``;
    * ``TaskUnschedulableError``, ``ActorUnschedulableError``,
      ``PlacementGroupSchedulingError``: ``WorkerUnavailableError``;
    * ``RuntimeEnvSetupError``: ``WorkerStartError``;
    * ``TaskCancelledError``: ``CallCancelledError``;
    * ``RaySerializationError``: ``SerializationError``;
    * ``RaySystemError``, ``GetTimeoutError`` and anything else:
      ``WorkerUnavailableError``.
    """
    if isinstance(exc, SnakepitError):
        return exc
    names = _names(exc)
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else type(exc).__name__
    error: SnakepitError
    if "ObjectStoreFullError" in names or "OutOfDiskError" in names:
        where = f" on node {node_id}" if node_id else ""
        error = SharedMemoryExhaustedError(f"the Ray object store{where} is full: {first_line}")
    elif "TaskCancelledError" in names:
        error = CallCancelledError(worker_id=worker_id)
    elif "RuntimeEnvSetupError" in names:
        error = WorkerStartError(
            reason=f"Ray could not set up the host's runtime_env: {first_line}",
            worker_id=worker_id,
        )
    elif any(
        name in names
        for name in (
            "TaskUnschedulableError",
            "ActorUnschedulableError",
            "PlacementGroupSchedulingError",
        )
    ):
        error = WorkerUnavailableError(
            reason=f"Ray cannot place the worker's host: {first_line}", worker_id=worker_id
        )
    elif any(name in names for name in _LOST) or "ObjectLostError" in names:
        pressure = any(marker in text for marker in _MEMORY_PRESSURE)
        info = classify_lost(type(exc).__name__, memory_pressure=pressure)
        error = WorkerCrashedError(
            info.description,
            exit_kind=info.kind,
            signal=info.signal,
            exit_code=info.exit_code,
            worker_id=worker_id,
        )
        if getattr(exc, "preempted", False):
            error.add_note("the node was preempted (drained by the autoscaler)")
        if getattr(exc, "actor_init_failed", False):
            error.add_note("the host actor failed while starting")
    elif "SerializationError" in names or "RaySerializationError" in names:
        error = SerializationError(f"Ray could not (de)serialize: {first_line}")
    else:
        error = WorkerUnavailableError(
            reason=f"Ray failed ({type(exc).__name__}): {first_line}", worker_id=worker_id
        )
    if node_id:
        error.add_note(f"node {node_id}")
    if text and isinstance(error, WorkerError):
        error.add_note(f"Ray said: {text[:2000]}")
    error.__cause__ = exc
    return error
