"""snakepit's structured exceptions (see ``docs/errors.md``).

Every error snakepit raises derives from :class:`SnakepitError`, pickles with
its fields intact and supports ``match`` through ``__match_args__``::

    from snakepit.errors import ShapeError

    try:
        pool.call(model_step, batch)
    except ShapeError as err:          # also catchable as the RuntimeError torch raised
        print(err.shape_a, err.shape_b)
        print(err.suggestion)          # "transposing the second operand fits: ..."

Errors raised by user code in a worker come back as the matching class with
a suggestion, still catchable by their original built-in type, with the
worker's traceback chained as ``__cause__``. :func:`configure` decides what
is shown. :class:`ExitKind` names how a worker process ended.
"""

from typing import TYPE_CHECKING, Any

from snakepit.errors._base import RemoteTraceback, SnakepitError
from snakepit.errors._config import ErrorSettings, configure, settings
from snakepit.errors._hierarchy import (
    CircuitOpenError,
    DeviceError,
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    OutOfMemoryError,
    PoolClosedError,
    PythonError,
    SerializationError,
    SessionLostError,
    ShapeError,
    UnshareableMemoryError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    WorkerTimeoutError,
    WorkerUnavailableError,
)
from snakepit.errors._kinds import ExitKind
from snakepit.errors._shared_memory import (
    InvalidDescriptorError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
)

__all__ = [
    "CallCancelledError",
    "CircuitOpenError",
    "DeviceError",
    "DeviceMismatchError",
    "DeviceNotAvailableError",
    "DtypeError",
    "ErrorSettings",
    "ExitKind",
    "InvalidDescriptorError",
    "OutOfMemoryError",
    "PoolClosedError",
    "PythonError",
    "RemoteTraceback",
    "SerializationError",
    "SessionLostError",
    "ShapeError",
    "SharedMemoryCapError",
    "SharedMemoryError",
    "SharedMemoryExhaustedError",
    "SnakepitError",
    "UnshareableMemoryError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerStartError",
    "WorkerTimeoutError",
    "WorkerUnavailableError",
    "configure",
    "settings",
]

if TYPE_CHECKING:
    from snakepit.errors._cancelled import CallCancelledError


def __getattr__(name: str) -> Any:
    # CallCancelledError derives from concurrent.futures.CancelledError, whose
    # import (logging with it) a worker's start need not pay: loaded on first use.
    if name == "CallCancelledError":
        from snakepit.errors._cancelled import CallCancelledError

        globals()[name] = CallCancelledError
        return CallCancelledError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
