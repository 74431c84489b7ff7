"""The snakepit exception classes: their fields, defaults and default messages.

Every class here:

* derives from :class:`~snakepit.errors.SnakepitError` and is made by
  :func:`~snakepit.errors._base.error_class`: a dataclass whose constructor
  takes the message first and every field keyword-only, registered by name;
* normalises the fields that need it in ``__post_init__`` (before the base
  builds the default message from them);
* builds a readable message from its fields when none is given, and takes its
  default ``suggestion`` from :mod:`snakepit.errors._advice`;
* lists its structured fields in ``__match_args__`` so ``match`` works.

The classes are described for users in ``docs/errors.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from snakepit._util import format_bytes
from snakepit.errors import _advice
from snakepit.errors._advice import Shape, shape_text
from snakepit.errors._base import SnakepitError, _with_suggestion, error_class
from snakepit.errors._kinds import ExitKind

# ------------------------------------------------------------- normalisation


def _as_shape(value: Sequence[int] | None) -> Shape | None:
    if value is None:
        return None
    return tuple(int(d) for d in value)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"expected an int or None, got {type(value).__name__}")
    return int(value)


# ------------------------------------------------------------------ remote python


@error_class
class PythonError(SnakepitError):
    """An exception raised by user code in a worker, wrapped for the supervisor.

    When the remote type was a built-in exception (``KeyError``, ``ValueError``,
    ...) the instance is also of that type; see ``remote_class`` in
    :mod:`snakepit.errors._base`.

    Attributes:
        python_type: Short name of the remote type, e.g. ``KeyError``.
        qualified_type: ``module.Qualname`` of the remote type (default
            ``builtins.<python_type>``).
    """

    __match_args__ = ("python_type", "message", "qualified_type", "remote_traceback")
    _mixed_name = "Remote{builtin}"

    python_type: str = "Exception"
    qualified_type: str = ""
    # Always the qualified type, so not a constructor argument.
    remote_type: str | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.qualified_type = self.qualified_type or f"builtins.{self.python_type}"
        self.remote_type = self.qualified_type
        super().__post_init__()

    def _default_message(self) -> str:
        return f"remote {self.python_type}"

    def __str__(self) -> str:
        head = f"{self.python_type}: {self.message}" if self.message else self.python_type
        return _with_suggestion(head, self.suggestion)


# ---------------------------------------------------------------- shapes / dtypes


@error_class
class ShapeError(SnakepitError):
    """Operand shapes do not fit the operation.

    Attributes:
        shape_a: Shape of the first operand (or, when the message only names the
            conflicting sizes along one dimension, a 1-tuple of that size).
        shape_b: Shape (or size, see ``shape_a``) of the second operand.
        operation: What was attempted: ``matmul``, ``mv``, ``bmm``, ``dot``,
            ``broadcast``, ``expand``, ``reshape``, ``view``, ``concatenate``,
            ``stack``, ``conv``, ``normalize``, ``length`` (row counts),
            ``features`` (``shape_a`` the input's count, ``shape_b`` the
            expected one), ``ndim``, ``samples``, ``linalg``... or ``None``.
        dimension: The dimension the sizes conflict at, when known.
        shapes: Every operand shape the message named, in order (three for a
            three-operand broadcast); ``shape_a``/``shape_b`` are the pair
            that conflicts. Defaults to ``(shape_a, shape_b)``.
    """

    __match_args__ = ("shape_a", "shape_b", "operation")

    shape_a: Shape | None = None
    shape_b: Shape | None = None
    operation: str | None = None
    dimension: int | None = None
    shapes: tuple[Shape, ...] = ()

    def __post_init__(self) -> None:
        # Lists (from JSON records, or typed by hand) become tuples of ints.
        self.shape_a = _as_shape(self.shape_a)
        self.shape_b = _as_shape(self.shape_b)
        self.dimension = _optional_int(self.dimension)
        named = tuple(tuple(int(d) for d in shape) for shape in self.shapes)
        self.shapes = named or tuple(s for s in (self.shape_a, self.shape_b) if s is not None)
        super().__post_init__()

    def _default_message(self) -> str:
        where = f" at dimension {self.dimension}" if self.dimension is not None else ""
        op = self.operation or "operation"
        return (
            f"shape mismatch in {op}: {shape_text(self.shape_a)} vs "
            f"{shape_text(self.shape_b)}{where}"
        )

    def _default_suggestion(self) -> str | None:
        return _advice.shape_suggestion(self.shape_a, self.shape_b, self.operation, self.dimension)


@error_class
class DtypeError(SnakepitError):
    """Operand dtypes do not fit the operation.

    Attributes:
        expected: The dtype the operation wanted (canonical name, e.g. ``float32``);
            for messages that only name two clashing dtypes, the first one.
        got: The dtype it was given (for a clash, the second one).
        operation: The operation, when known (e.g. a ufunc name).
    """

    __match_args__ = ("expected", "got")

    expected: str | None = None
    got: str | None = None
    operation: str | None = None

    def _default_message(self) -> str:
        op = f" in {self.operation}" if self.operation else ""
        return f"dtype mismatch{op}: expected {self.expected or '?'}, got {self.got or '?'}"

    def _default_suggestion(self) -> str | None:
        return _advice.dtype_suggestion(self.expected, self.got)


# ------------------------------------------------------------------------ devices


@error_class
class DeviceError(SnakepitError):
    """A device (CPU, CUDA GPU, ...) problem.

    Attributes:
        device: The device concerned (``cpu``, ``cuda:0``...), when known.
    """

    __match_args__ = ("device",)

    device: str | None = None

    def _default_message(self) -> str:
        return f"device error on {self.device or 'unknown device'}"


@error_class
class OutOfMemoryError(DeviceError):
    """An allocation failed for lack of memory (GPU or host).

    Attributes:
        requested: Bytes the failed allocation asked for, when known.
        available: Bytes free on the device at the time, when known (from the
            message, else measured in the worker right after the failure).
        total: Total bytes of the device (or the allocator's limit), when known.
        framework: The library that ran out (``torch``, ``jax``, ``cupy``,
            ``numpy``, ``pyarrow``...), when known; it picks the suggestion.
    """

    __match_args__ = ("device", "requested", "available", "total")

    requested: int | None = None
    available: int | None = None
    total: int | None = None
    framework: str | None = None

    def __post_init__(self) -> None:
        self.requested = _optional_int(self.requested)
        self.available = _optional_int(self.available)
        self.total = _optional_int(self.total)
        super().__post_init__()

    def _default_message(self) -> str:
        return (
            f"out of memory on {self.device or 'device'}: tried to allocate "
            f"{format_bytes(self.requested)} with {format_bytes(self.available)} free "
            f"of {format_bytes(self.total)}"
        )

    def _default_suggestion(self) -> str | None:
        return _advice.oom_suggestion(
            self.device, self.framework, self.requested, self.available, self.total
        )


@error_class
class DeviceMismatchError(DeviceError):
    """Tensors of one operation live on different devices.

    Attributes:
        devices: The devices involved, in the order the message named them.
        device: The device to move everything to (default: the first
            accelerator among ``devices``).
    """

    __match_args__ = ("devices",)

    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.devices = tuple(str(d) for d in self.devices)
        if self.device is None:
            self.device = _advice.pick_target_device(self.devices)
        super().__post_init__()

    def _default_message(self) -> str:
        found = " and ".join(self.devices) if self.devices else "several devices"
        return f"tensors are on different devices: {found}"

    def _default_suggestion(self) -> str | None:
        return _advice.device_mismatch_suggestion(self.devices)


@error_class
class DeviceNotAvailableError(DeviceError):
    """The requested device does not exist or cannot be used here.

    Attributes:
        reason: Why it is unavailable (no driver, index out of range, ...).
    """

    __match_args__ = ("device", "reason")

    reason: str | None = None

    def _default_message(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"device {self.device or '?'} is not available{why}"

    def _default_suggestion(self) -> str | None:
        return _advice.DEVICE_NOT_AVAILABLE


@error_class
class UnshareableMemoryError(DeviceError):
    """GPU memory of a kind that CUDA IPC handles cannot share with another process.

    Legacy CUDA IPC (``cuIpcGetMemHandle``) shares only ``cuMemAlloc``
    allocations; see docs/zero-copy.md for what is copied instead.

    Attributes:
        memory_kind: ``"pool"`` (a stream-ordered pool: ``cudaMallocAsync``,
            torch's ``backend:cudaMallocAsync``), ``"vmm"`` (``cuMemCreate`` +
            ``cuMemMap``: torch's ``expandable_segments``), ``"managed"`` or
            ``"host"`` (pinned host memory).
        reason: Why it cannot be shared.
    """

    __match_args__ = ("device", "memory_kind", "reason")

    memory_kind: str | None = None
    reason: str | None = None

    def _default_message(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return (
            f"{self.memory_kind or 'this'} memory on {self.device or 'the GPU'} cannot be "
            f"shared by CUDA IPC{why}"
        )

    def _default_suggestion(self) -> str | None:
        return (
            "copy it once into shareable memory (snakepit.zero_copy.export_cuda_copy), or "
            "allocate it with the default caching allocator (no cudaMallocAsync / "
            "expandable_segments / managed memory)"
        )


# ------------------------------------------------------------------ serialisation


@error_class
class SerializationError(SnakepitError):
    """A value could not be encoded for, or decoded from, the worker channel.

    Attributes:
        direction: ``"encode"`` or ``"decode"``.
        type_name: Name of the offending type, when known.
    """

    __match_args__ = ("direction", "type_name")

    direction: str = "encode"
    type_name: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("encode", "decode"):
            raise ValueError(f"direction must be 'encode' or 'decode', not {self.direction!r}")
        super().__post_init__()

    def _default_message(self) -> str:
        what = f" a {self.type_name}" if self.type_name else ""
        return f"could not {self.direction}{what}"

    def _default_suggestion(self) -> str | None:
        return _advice.serialization_suggestion(self.direction)


# ------------------------------------------------------------------------ workers


@error_class
class WorkerError(SnakepitError):
    """A worker process failed (as opposed to the user code inside it).

    Attributes:
        worker_id: The worker slot concerned, when known.
    """

    __match_args__ = ("worker_id",)

    worker_id: int | None = None

    def __post_init__(self) -> None:
        self.worker_id = _optional_int(self.worker_id)
        super().__post_init__()

    def _worker_text(self) -> str:
        return f"worker {self.worker_id}" if self.worker_id is not None else "worker"

    def _default_message(self) -> str:
        return f"{self._worker_text()} failed"


@error_class
class WorkerCrashedError(WorkerError):
    """The worker process died while (or before) running the call.

    Attributes:
        exit_kind: Exit classification, an :class:`~snakepit.errors.ExitKind`
            value (``segfault``, ``abort``, ``killed``, ...), kept as a plain
            ``str`` so the error pickles and serialises simply.
        signal: The terminating signal number, if a signal ended it.
        exit_code: The exit status, if it exited.
    """

    __match_args__ = ("exit_kind", "signal", "exit_code", "worker_id")

    exit_kind: str = ExitKind.unknown.value
    signal: int | None = None
    exit_code: int | None = None

    def __post_init__(self) -> None:
        # An ExitKind (or any str enum) is stored as its plain value.
        self.exit_kind = str(getattr(self.exit_kind, "value", self.exit_kind))
        self.signal = _optional_int(self.signal)
        self.exit_code = _optional_int(self.exit_code)
        super().__post_init__()

    def _default_message(self) -> str:
        detail = []
        if self.signal is not None:
            detail.append(f"signal {self.signal}")
        if self.exit_code is not None:
            detail.append(f"exit code {self.exit_code}")
        extra = f" ({', '.join(detail)})" if detail else ""
        return f"{self._worker_text()} crashed: {self.exit_kind}{extra}"

    def _default_suggestion(self) -> str | None:
        return _advice.crash_suggestion(self.exit_kind, has_stack=bool(self.remote_traceback))


@error_class
class WorkerTimeoutError(WorkerError):
    """A call ran past its timeout; its worker was killed and will be replaced.

    Attributes:
        timeout: The timeout that was exceeded, in seconds.
    """

    __match_args__ = ("timeout", "worker_id")

    timeout: float

    def __post_init__(self) -> None:
        self.timeout = float(self.timeout)
        super().__post_init__()

    def _default_message(self) -> str:
        return f"call on {self._worker_text()} timed out after {self.timeout:g} s"

    def _default_suggestion(self) -> str | None:
        return _advice.CRASH_SUGGESTIONS[ExitKind.timeout]


@error_class
class WorkerUnavailableError(WorkerError):
    """No worker can take the call (all slots unhealthy, pool closed, ...).

    Attributes:
        reason: Why no worker is available.
    """

    __match_args__ = ("reason", "worker_id")

    reason: str | None = None

    def _default_message(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"no {self._worker_text()} available{why}"


@error_class
class WorkerStartError(WorkerError):
    """``Pool(...)`` could not start its workers: an initializer raised, or
    every worker died before it was ready.

    The initializer's own exception (as a :class:`PythonError`, catchable by
    its built-in type) is chained as ``__cause__``; its traceback in the
    worker is ``remote_traceback``.

    Attributes:
        reason: What failed.
        exit_kind: How the worker ended, an :class:`~snakepit.errors.ExitKind`
            value (``python_error`` for an initializer that raised).
    """

    __match_args__ = ("reason", "worker_id", "exit_kind")

    reason: str | None = None
    exit_kind: str | None = None

    def __post_init__(self) -> None:
        if self.exit_kind is not None:
            self.exit_kind = str(getattr(self.exit_kind, "value", self.exit_kind))
        super().__post_init__()

    def _default_message(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self._worker_text()} could not start{why}"

    def _default_suggestion(self) -> str | None:
        return _advice.WORKER_START


@error_class
class SessionLostError(WorkerError):
    """The worker holding a session's state ended, so that state is gone.

    Raised once per loss (see docs/crash-recovery.md, "Lost sessions"); the
    error that ended the worker (a :class:`WorkerCrashedError`, a
    :class:`WorkerTimeoutError`, ...) is chained as ``__cause__``. The next
    call of the session starts a fresh one.

    Attributes:
        session: The session's name.
        exit_kind: How its worker ended, an :class:`~snakepit.errors.ExitKind`
            value (``segfault``, ``killed``, ``timeout``...).
        pid: The process id of the worker that held the session.
    """

    __match_args__ = ("session", "exit_kind", "pid", "worker_id")

    session: str = ""
    exit_kind: str = ExitKind.unknown.value
    pid: int | None = None

    def __post_init__(self) -> None:
        self.exit_kind = str(getattr(self.exit_kind, "value", self.exit_kind))
        self.pid = _optional_int(self.pid)
        super().__post_init__()

    def _default_message(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        return (
            f"session {self.session!r} was lost: {self._worker_text()}{pid} that held its "
            f"state ended ({self.exit_kind})"
        )

    def _default_suggestion(self) -> str | None:
        return _advice.SESSION_LOST


@error_class
class PoolClosedError(WorkerUnavailableError, RuntimeError):
    """A call was submitted to a pool that was already shut down.

    Also a :class:`RuntimeError`, which is what :mod:`concurrent.futures`
    executors raise in that case, so code written for them keeps working.
    """

    __match_args__ = ("reason", "worker_id")

    def __post_init__(self) -> None:
        if self.reason is None:
            self.reason = "the pool was shut down"
        super().__post_init__()

    def _default_message(self) -> str:
        return "cannot submit to a pool that was shut down"

    def _default_suggestion(self) -> str | None:
        return _advice.POOL_CLOSED


# ------------------------------------------------------------------------ circuit


@error_class
class CircuitOpenError(SnakepitError):
    """A circuit breaker is open, so the call was refused without running.

    Attributes:
        circuit: Name of the open circuit (``global``, ``device:cuda:0``...).
        retry_after: Seconds until the circuit lets a probe through, if known
            (never negative).
    """

    __match_args__ = ("circuit", "retry_after")

    circuit: str
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.retry_after is not None:
            self.retry_after = max(0.0, float(self.retry_after))
        super().__post_init__()

    def _default_message(self) -> str:
        when = f"; retry in {self.retry_after:.2f} s" if self.retry_after is not None else ""
        return f"circuit {self.circuit!r} is open after repeated failures{when}"

    def _default_suggestion(self) -> str | None:
        return _advice.CIRCUIT_OPEN
