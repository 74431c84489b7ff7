"""The snakepit exception hierarchy (SPEC section 5) and the C-core status mapping.

Every class here:

* derives from :class:`SnakepitError`;
* declares its structured fields as annotated class attributes; the
  constructor (message first, every field keyword-only) is generated from
  them by :mod:`dataclasses` (see :func:`_error_fields`), and builds a
  readable message from the fields when none is given;
* carries a ``suggestion`` (a concrete next step for the user, or ``None``);
* lists its structured fields in ``__match_args__`` so ``match`` works;
* pickles with every attribute intact (one generic ``__reduce__`` in the base,
  because the constructors are keyword-only and the default exception
  pickling would call them positionally).

This module deliberately imports nothing else from snakepit: every other layer
(including the Cython core) depends on it, never the reverse.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY
from typing import Any, ClassVar, Generic, TypeVar, cast

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - 3.10: it only informs type checkers, so a no-op will do

    def dataclass_transform(**_: object) -> Callable[[_T], _T]:
        return lambda obj: obj


__all__ = [
    "CircuitOpenError",
    "CoreStatus",
    "DeviceError",
    "DeviceMismatchError",
    "DeviceNotAvailableError",
    "DtypeError",
    "InvalidDescriptorError",
    "OutOfMemoryError",
    "PythonError",
    "SerializationError",
    "Shape",
    "ShapeError",
    "SharedMemoryCapError",
    "SharedMemoryError",
    "SharedMemoryExhaustedError",
    "SnakepitError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerTimeoutError",
    "WorkerUnavailableError",
    "builtin_exception_type",
    "format_bytes",
    "from_core_status",
    "remote_class",
]

Shape = tuple[int, ...]
"""A tensor shape as a tuple of non-negative ints."""

_E = TypeVar("_E", bound="SnakepitError")
_T = TypeVar("_T")
_In = TypeVar("_In")
_Out = TypeVar("_Out")

_SHM_DIR = "/dev/shm"

_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on classes created by Python code


def format_bytes(n: int | None) -> str:
    """Render a byte count for humans, e.g. ``2.00 GiB``; ``None`` gives ``unknown``."""
    if n is None:
        return "unknown"
    if abs(n) < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024.0
        if abs(value) < 1024.0 or unit == "PiB":
            return f"{value:.2f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _shape_text(shape: Shape | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


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


def _str_tuple(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _enum_value(value: str) -> str:
    # ExitKind is a str Enum; keep the plain value so pickles and JSON stay simple.
    return str(getattr(value, "value", value))


def _non_negative(value: float | None) -> float | None:
    return None if value is None else max(0.0, float(value))


def _direction(value: str) -> str:
    if value not in ("encode", "decode"):
        raise ValueError(f"direction must be 'encode' or 'decode', not {value!r}")
    return value


# ---------------------------------------------------------------- field machinery


class _Field(Generic[_In, _Out]):
    """A field that normalises every value assigned to it (a dataclass descriptor field).

    The generated ``__init__`` assigns each field, so ``convert`` runs on the
    constructor argument too, and type checkers take the parameter type from
    ``__set__`` (``_In``) and the attribute type from ``__get__`` (``_Out``).
    Without ``convert`` the value is stored as given: that is for fields whose
    ``None`` a ``__post_init__`` replaces by a default built from other fields.
    The value lives in the instance ``__dict__`` under the field's name, so
    ``vars()``, pickling and copying see it as a plain attribute.
    """

    def __init__(self, default: _In, convert: Callable[[_In], _Out] | None = None) -> None:
        self._default = default
        self._convert = convert
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: object, owner: type | None = None) -> _Out:
        if obj is None:
            # dataclasses reads the field default through class access.
            return cast("_Out", self._default)
        try:
            return cast("_Out", obj.__dict__[self._name])
        except KeyError:
            raise AttributeError(self._name) from None

    def __set__(self, obj: object, value: _In) -> None:
        obj.__dict__[self._name] = value if self._convert is None else self._convert(value)


def _converted(default: _T, convert: Callable[[_T], _T]) -> _T:
    """Default of a field whose type ``convert`` keeps, but whose value it normalises."""
    return cast("_T", _Field(default, convert))


@dataclass_transform(kw_only_default=True, eq_default=False, field_specifiers=(dataclasses.field,))
def _error_fields(cls: type[_E]) -> type[_E]:
    """Generate the constructor of an error subclass from its annotated fields.

    ``SnakepitError`` already holds the positional ``message``, so every field
    a subclass adds is keyword-only.
    """
    return dataclasses.dataclass(kw_only=True, eq=False, repr=False, match_args=False)(cls)


# --------------------------------------------------------------------------- base


# eq=False: exceptions compare and hash by identity. repr/match_args=False: the
# hand-written __repr__ and __match_args__ below (and in subclasses) stay.
@dataclasses.dataclass(eq=False, repr=False, match_args=False)
class SnakepitError(Exception):
    """Base class of every error snakepit raises.

    Attributes:
        message: The human-readable message (without the suggestion).
        suggestion: A concrete next step for the user, or ``None``.
        remote_traceback: The formatted traceback from the worker process when
            the error happened there, else ``None``.
        remote_type: Qualified name (``module.Qual``) of the original remote
            exception type when the error happened in a worker, else ``None``.
    """

    __match_args__: ClassVar[tuple[str, ...]] = ("message",)

    message: _Field[str | None, str] = _Field(None)
    _: KW_ONLY
    suggestion: str | None = None
    remote_traceback: str | None = None
    remote_type: str | None = None

    def __post_init__(self) -> None:
        # The defaults are built from the subclass fields, so they can only be
        # filled in once the generated __init__ has set every field.
        if vars(self)["message"] is None:
            self.message = self._default_message()
        if self.suggestion is None:
            self.suggestion = self._default_suggestion()
        super().__init__(self.message)

    def _default_message(self) -> str:
        """Message used when the caller gives none; subclasses build it from fields."""
        return type(self).__name__

    def _default_suggestion(self) -> str | None:
        """Suggestion used when the caller gives none; subclasses derive it from fields."""
        return None

    @property
    def fields(self) -> dict[str, object]:
        """The structured fields named in ``__match_args__``, as a dict."""
        return {name: getattr(self, name, None) for name in type(self).__match_args__}

    def __str__(self) -> str:
        if self.suggestion:
            return f"{self.message}\nSuggestion: {self.suggestion}"
        return self.message

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The whole instance dict travels (fields, suggestion, remote data and any
        # __notes__), so no subclass needs its own pickling code. Dynamically
        # created "catchable as KeyError" classes are not importable by name, so
        # they travel as the (base, builtin) pair that recreates them.
        return (_reconstruct, (_class_spec(type(self)), self.args, dict(self.__dict__)))


def _reconstruct(
    spec: type[SnakepitError] | tuple[type[SnakepitError], type[BaseException]],
    args: tuple[Any, ...],
    state: dict[str, Any],
) -> SnakepitError:
    """Unpickling helper: rebuild an error without calling its ``__init__``."""
    cls = remote_class(spec[0], spec[1]) if isinstance(spec, tuple) else spec
    if not (isinstance(cls, type) and issubclass(cls, SnakepitError)):
        raise TypeError(f"not a SnakepitError class: {cls!r}")
    # Use the __new__ that instantiation itself would use: that of the nearest
    # static (non-heap) base along __base__. Plain attribute lookup can find a
    # different built-in's __new__ in the MRO (MemoryError's, for
    # RemoteMemoryError), which CPython rejects as unsafe.
    static: type = cls
    while static.__flags__ & _HEAPTYPE and static.__base__ is not None:
        static = static.__base__
    obj: SnakepitError = static.__new__(cls, *args)
    BaseException.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


# ------------------------------------------------------------------ remote python


@_error_fields
class PythonError(SnakepitError):
    """An exception raised by user code in a worker, wrapped for the supervisor.

    When the remote type was a built-in exception (``KeyError``, ``ValueError``,
    ...) the instance is also of that type; see :func:`remote_class`.

    Attributes:
        python_type: Short name of the remote type, e.g. ``KeyError``.
        qualified_type: ``module.Qualname`` of the remote type.
    """

    __match_args__ = ("python_type", "message", "qualified_type", "remote_traceback")

    python_type: str = "Exception"
    qualified_type: _Field[str | None, str] = _Field(None)
    # Always the qualified type, so not a constructor argument.
    remote_type: str | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.qualified_type = vars(self)["qualified_type"] or f"builtins.{self.python_type}"
        self.remote_type = self.qualified_type
        super().__post_init__()

    def _default_message(self) -> str:
        return f"remote {self.python_type}"

    def __str__(self) -> str:
        head = f"{self.python_type}: {self.message}" if self.message else self.python_type
        if self.suggestion:
            return f"{head}\nSuggestion: {self.suggestion}"
        return head


# ---------------------------------------------------------------- shapes / dtypes


def _matmul_suggestion(a: Shape, b: Shape) -> str:
    if len(a) >= 2 and len(b) >= 2:
        if a[-1] == b[-1]:
            return (
                f"matmul needs a.shape[-1] == b.shape[-2]; {_shape_text(a)} @ {_shape_text(b)} "
                f"does not fit, but transposing the second operand does: "
                f"a @ b.T (or b.transpose(-2, -1)) has shape "
                f"{_shape_text((*a[:-1], b[-2]))}"
            )
        if a[-2] == b[-2]:
            return (
                f"matmul needs a.shape[-1] == b.shape[-2]; transposing the first operand fits: "
                f"a.T @ b (or a.transpose(-2, -1) @ b) has shape {_shape_text((a[-1], b[-1]))}"
            )
        if a[-2] == b[-1]:
            return (
                "matmul needs a.shape[-1] == b.shape[-2]; the operands look swapped: "
                f"b @ a has shape {_shape_text((*b[:-1], a[-1]))}"
            )
    return (
        "matmul needs the last dimension of the first operand to equal the second-to-last "
        "of the second; transpose one operand (x.T / x.transpose(-2, -1)) or reshape it"
    )


def _shape_suggestion(
    a: Shape | None, b: Shape | None, operation: str | None, dimension: int | None
) -> str:
    op = (operation or "").lower()
    if op in {"matmul", "mm", "dot", "bmm", "linear"}:
        if a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
            return _matmul_suggestion(a, b)
        if a is not None and b is not None and len(a) == 1 and len(b) == 1:
            return (
                f"matmul inner sizes differ ({a[0]} vs {b[0]}); transpose the operand whose "
                "inner dimension is wrong (x.T / x.transpose(-2, -1)) or reshape it"
            )
        return _matmul_suggestion((), ())
    if op == "reshape":
        return (
            "a reshape/view must keep the number of elements; pick a target shape whose "
            "product matches the input size, or use -1 for one dimension to let it be inferred"
        )
    if a is not None and b is not None and dimension is not None and len(a) == len(b) == 1:
        return (
            f"sizes {a[0]} and {b[0]} differ at dimension {dimension}; reshape or slice one "
            "tensor so they match there, or make one of them 1 there so it broadcasts"
        )
    if a is not None and b is not None:
        return (
            f"shapes {_shape_text(a)} and {_shape_text(b)} cannot be broadcast: aligned from the "
            "right, each pair of dimensions must be equal or 1; reshape one operand "
            "(x.reshape(...)) or add a size-1 axis (x[:, None] / x.unsqueeze(dim)) to line them up"
        )
    return "check the operand shapes; reshape or broadcast them so the dimensions line up"


@_error_fields
class ShapeError(SnakepitError):
    """Operand shapes do not fit the operation.

    Attributes:
        shape_a: Shape of the first operand (or, when the message only names the
            conflicting sizes along one dimension, a 1-tuple of that size).
        shape_b: Shape (or size, see ``shape_a``) of the second operand.
        operation: What was attempted: ``matmul``, ``broadcast``, ``reshape``...
        dimension: The dimension the sizes conflict at, when known.
    """

    __match_args__ = ("shape_a", "shape_b", "operation")

    shape_a: _Field[Sequence[int] | None, Shape | None] = _Field(None, _as_shape)
    shape_b: _Field[Sequence[int] | None, Shape | None] = _Field(None, _as_shape)
    operation: str | None = None
    dimension: int | None = _converted(None, _optional_int)

    def _default_message(self) -> str:
        where = f" at dimension {self.dimension}" if self.dimension is not None else ""
        op = self.operation or "operation"
        return (
            f"shape mismatch in {op}: {_shape_text(self.shape_a)} vs "
            f"{_shape_text(self.shape_b)}{where}"
        )

    def _default_suggestion(self) -> str | None:
        return _shape_suggestion(self.shape_a, self.shape_b, self.operation, self.dimension)


@_error_fields
class DtypeError(SnakepitError):
    """Operand dtypes do not fit the operation.

    Attributes:
        expected: The dtype the operation wanted (canonical name, e.g. ``float32``).
        got: The dtype it was given.
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
        if self.expected:
            return (
                f"cast the {self.got or 'mismatched'} operand to {self.expected}: "
                f"x.astype(numpy.{self.expected}) for NumPy or "
                f"x.to(torch.{self.expected}) for PyTorch"
            )
        return "cast the operands to one common dtype (x.astype(...) / x.to(dtype))"


# ------------------------------------------------------------------------ devices


@_error_fields
class DeviceError(SnakepitError):
    """A device (CPU, CUDA GPU, ...) problem.

    Attributes:
        device: The device concerned (``cpu``, ``cuda:0``...), when known.
    """

    __match_args__ = ("device",)

    device: str | None = None

    def _default_message(self) -> str:
        return f"device error on {self.device or 'unknown device'}"


@_error_fields
class OutOfMemoryError(DeviceError):
    """An allocation failed for lack of memory (GPU or host).

    Attributes:
        requested: Bytes the failed allocation asked for, when known.
        available: Bytes free on the device at the time, when known.
        total: Total bytes of the device, when known.
    """

    __match_args__ = ("device", "requested", "available", "total")

    requested: int | None = _converted(None, _optional_int)
    available: int | None = _converted(None, _optional_int)
    total: int | None = _converted(None, _optional_int)

    def _default_message(self) -> str:
        return (
            f"out of memory on {self.device or 'device'}: tried to allocate "
            f"{format_bytes(self.requested)} with {format_bytes(self.available)} free "
            f"of {format_bytes(self.total)}"
        )

    def _default_suggestion(self) -> str | None:
        figures = ""
        if self.requested is not None and self.available is not None:
            short = self.requested - self.available
            if short > 0:
                figures = f"the allocation is {format_bytes(short)} larger than the free memory; "
        gpu = (self.device or "").startswith(("cuda", "gpu", "mps", "rocm", "hip"))
        if gpu:
            return (
                f"{figures}reduce the batch size, use lower precision (float16/bfloat16 or "
                "torch.autocast), and release cached memory (del unused tensors, then "
                "torch.cuda.empty_cache())"
            )
        return (
            f"{figures}reduce the batch size or process the data in chunks, use a smaller "
            "dtype (float32/float16 instead of float64), and drop references to large arrays "
            "you no longer need"
        )


def _pick_target_device(devices: Sequence[str]) -> str | None:
    # Models usually live on the accelerator, so suggest moving the stray CPU
    # tensor there rather than dragging everything back to the CPU.
    for dev in devices:
        if dev != "cpu":
            return dev
    return devices[0] if devices else None


@_error_fields
class DeviceMismatchError(DeviceError):
    """Tensors of one operation live on different devices.

    Attributes:
        devices: The devices involved, in the order the message named them.
    """

    __match_args__ = ("devices",)

    devices: _Field[Sequence[str], tuple[str, ...]] = _Field((), _str_tuple)

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = _pick_target_device(self.devices)
        super().__post_init__()

    def _default_message(self) -> str:
        found = " and ".join(self.devices) if self.devices else "several devices"
        return f"tensors are on different devices: {found}"

    def _default_suggestion(self) -> str | None:
        target = _pick_target_device(self.devices) or "cuda"
        return (
            f"move every tensor (and the model) to one device before the operation, "
            f"e.g. tensor.to('{target}') / model.to('{target}')"
        )


@_error_fields
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
        return (
            "run `snakepit hardware` to see the devices present, or choose another device "
            "(device='cpu', or select_with_fallback([...]))"
        )


# ------------------------------------------------------------------ serialisation


@_error_fields
class SerializationError(SnakepitError):
    """A value could not be encoded for, or decoded from, the worker channel.

    Attributes:
        direction: ``"encode"`` or ``"decode"``.
        type_name: Name of the offending type, when known.
    """

    __match_args__ = ("direction", "type_name")

    direction: str = _converted("encode", _direction)
    type_name: str | None = None

    def _default_message(self) -> str:
        what = f" a {self.type_name}" if self.type_name else ""
        return f"could not {self.direction}{what}"

    def _default_suggestion(self) -> str | None:
        if self.direction == "encode":
            return (
                "pass picklable arguments (module-level functions, plain data, arrays); "
                "open files, locks, sockets and live connections cannot cross processes"
            )
        return (
            "make sure the module defining the value is importable in both the worker and the "
            "supervisor (same code, same sys.path)"
        )


# ------------------------------------------------------------------------ workers


@_error_fields
class WorkerError(SnakepitError):
    """A worker process failed (as opposed to the user code inside it).

    Attributes:
        worker_id: The worker slot concerned, when known.
    """

    __match_args__ = ("worker_id",)

    worker_id: int | None = _converted(None, _optional_int)

    def _worker_text(self) -> str:
        return f"worker {self.worker_id}" if self.worker_id is not None else "worker"

    def _default_message(self) -> str:
        return f"{self._worker_text()} failed"


_CRASH_SUGGESTIONS: dict[str, str] = {
    "segfault": (
        "native code in the worker read or wrote invalid memory (SIGSEGV); check array "
        "shapes/dtypes/contiguity passed to C extensions and run the call with "
        "PYTHONFAULTHANDLER=1 to see where it crashed"
    ),
    "abort": (
        "a native library called abort() (failed assertion or uncaught C++ exception); "
        "the worker's stderr usually names the assertion"
    ),
    "bus_error": (
        "the worker touched unmapped or misaligned memory (SIGBUS); a full /dev/shm or a "
        "truncated memory-mapped file are common causes"
    ),
    "floating_point_error": (
        "an integer division by zero or trapped floating-point error in native code (SIGFPE)"
    ),
    "killed": (
        "the worker was killed from outside; SIGKILL often means the kernel OOM killer: "
        "reduce memory use per call or raise the memory limit"
    ),
    "timeout": "the call exceeded its timeout; raise timeout= or make the call faster",
}


@_error_fields
class WorkerCrashedError(WorkerError):
    """The worker process died while (or before) running the call.

    Attributes:
        exit_kind: Exit classification (``segfault``, ``abort``, ``killed``, ...).
        signal: The terminating signal number, if a signal ended it.
        exit_code: The exit status, if it exited.
    """

    __match_args__ = ("exit_kind", "signal", "exit_code", "worker_id")

    exit_kind: str = _converted("unknown", _enum_value)
    signal: int | None = _converted(None, _optional_int)
    exit_code: int | None = _converted(None, _optional_int)

    def _default_message(self) -> str:
        detail = []
        if self.signal is not None:
            detail.append(f"signal {self.signal}")
        if self.exit_code is not None:
            detail.append(f"exit code {self.exit_code}")
        extra = f" ({', '.join(detail)})" if detail else ""
        return f"{self._worker_text()} crashed: {self.exit_kind}{extra}"

    def _default_suggestion(self) -> str | None:
        return _CRASH_SUGGESTIONS.get(self.exit_kind)


@_error_fields
class WorkerTimeoutError(WorkerError):
    """A call ran past its timeout; its worker was killed and will be replaced.

    Attributes:
        timeout: The timeout that was exceeded, in seconds.
    """

    __match_args__ = ("timeout", "worker_id")

    # Required, so not a _Field: a converting field always carries a default.
    timeout: float

    def __post_init__(self) -> None:
        self.timeout = float(self.timeout)
        super().__post_init__()

    def _default_message(self) -> str:
        return f"call on {self._worker_text()} timed out after {self.timeout:g} s"

    def _default_suggestion(self) -> str | None:
        return _CRASH_SUGGESTIONS["timeout"]


@_error_fields
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


# ------------------------------------------------------------------------ circuit


@_error_fields
class CircuitOpenError(SnakepitError):
    """A circuit breaker is open, so the call was refused without running.

    Attributes:
        circuit: Name of the open circuit (``global``, ``device:cuda:0``...).
        retry_after: Seconds until the circuit lets a probe through, if known.
    """

    __match_args__ = ("circuit", "retry_after")

    circuit: str
    retry_after: float | None = _converted(None, _non_negative)

    def _default_message(self) -> str:
        when = f"; retry in {self.retry_after:.2f} s" if self.retry_after is not None else ""
        return f"circuit {self.circuit!r} is open after repeated failures{when}"

    def _default_suggestion(self) -> str | None:
        return (
            "workers have been failing repeatedly; check pool.health() for the crash "
            "history before retrying"
        )


# ------------------------------------------------------------------ shared memory


@_error_fields
class SharedMemoryError(SnakepitError):
    """A shared-memory operation of the zero-copy layer failed.

    Attributes:
        name: The region name concerned, when known.
        status: The C core status code (see :class:`CoreStatus`), when known.
        os_errno: The ``errno`` of the failing system call, when known.
    """

    __match_args__ = ("name", "status", "os_errno")

    name: str | None = None
    status: int | None = _converted(None, _optional_int)
    os_errno: int | None = _converted(None, _optional_int)

    def _default_message(self) -> str:
        where = f" for region {self.name!r}" if self.name else ""
        err = f": {os.strerror(self.os_errno)}" if self.os_errno else ""
        return f"shared memory operation failed{where}{err}"


@_error_fields
class InvalidDescriptorError(SharedMemoryError):
    """A TensorRef or region name is forged, malformed or stale.

    Attributes:
        reason: What was wrong with it.
    """

    __match_args__ = ("reason", "name")

    reason: str | None = None

    def _default_message(self) -> str:
        where = f" {self.name!r}" if self.name else ""
        return f"invalid shared-memory descriptor{where}: {self.reason or 'rejected'}"

    def _default_suggestion(self) -> str | None:
        return (
            "only pass TensorRefs obtained from snakepit (share/ref_of/empty) and keep the "
            "array alive until the receiver has opened it"
        )


def _shm_hint(requested: int | None, available: int | None) -> str:
    more = ""
    if requested is not None and available is not None and requested > available:
        more = f" by at least {format_bytes(requested - available)}"
    return (
        f"release shared arrays you no longer need, or enlarge {_SHM_DIR}{more}: "
        "`docker run --shm-size=<size> ...` for containers (Kubernetes: an emptyDir with "
        "medium: Memory), or `sudo mount -o remount,size=<size> /dev/shm` on a host; "
        "if snakepit's own shared-memory cap is the limit, raise that instead"
    )


@_error_fields
class SharedMemoryExhaustedError(SharedMemoryError):
    """The shared-memory filesystem (``/dev/shm``) has no room for an allocation.

    Attributes:
        requested: Bytes asked for.
        available: Bytes left, when known.
        hint: How to make room (also the default ``suggestion``).
    """

    __match_args__ = ("requested", "available", "hint")

    requested: int | None = _converted(None, _optional_int)
    available: int | None = _converted(None, _optional_int)
    hint: _Field[str | None, str] = _Field(None)

    def __post_init__(self) -> None:
        if vars(self)["hint"] is None:
            self.hint = self._default_hint()
        super().__post_init__()

    def _default_hint(self) -> str:
        return _shm_hint(self.requested, self.available)

    def _default_message(self) -> str:
        return (
            f"cannot allocate {format_bytes(self.requested)} of shared memory: only "
            f"{format_bytes(self.available)} left in {_SHM_DIR}"
        )

    def _default_suggestion(self) -> str | None:
        return self.hint


@_error_fields
class SharedMemoryCapError(SharedMemoryExhaustedError):
    """An allocation would exceed snakepit's configured shared-memory cap.

    Attributes:
        cap: The configured cap in bytes, when known.
    """

    __match_args__ = ("requested", "available", "hint", "cap")

    cap: int | None = _converted(None, _optional_int)

    def _default_hint(self) -> str:
        cap = f" (currently {format_bytes(self.cap)})" if self.cap is not None else ""
        return (
            "release shared arrays you no longer need (ref.release() or drop the arrays), "
            f"or raise snakepit's shared-memory cap{cap}"
        )

    def _default_message(self) -> str:
        return (
            f"cannot allocate {format_bytes(self.requested)} of shared memory: only "
            f"{format_bytes(self.available)} left under snakepit's shared-memory cap"
        )


# ------------------------------------------------------------ catchable builtins

# Built-ins that cannot be mixed into a wrapper: their constructors or
# attributes carry protocol meaning (StopIteration drives iteration, groups
# need a list of exceptions, Unicode errors need five positional arguments).
_UNMIXABLE: frozenset[str] = frozenset(
    {
        "StopIteration",
        "StopAsyncIteration",
        "BaseExceptionGroup",
        "ExceptionGroup",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
        "UnicodeTranslateError",
    }
)

_REMOTE_CLASSES: dict[tuple[type[SnakepitError], type[BaseException]], type[SnakepitError]] = {}
_REMOTE_SPECS: dict[type[SnakepitError], tuple[type[SnakepitError], type[BaseException]]] = {}
_REMOTE_LOCK = threading.Lock()


def builtin_exception_type(name: str) -> type[Exception] | None:
    """The built-in exception class a remote error may also be caught as.

    ``name`` is a short built-in name (``KeyError``). Unmixable built-ins are
    replaced by their nearest mixable base (``UnicodeDecodeError`` becomes
    ``UnicodeError``); unknown names and ``Exception`` itself give ``None``.
    """
    obj = getattr(builtins, name, None)
    if not (isinstance(obj, type) and issubclass(obj, Exception)):
        return None
    for cand in obj.__mro__:
        if cand is Exception:
            return None
        if (
            isinstance(cand, type)
            and issubclass(cand, Exception)
            and cand.__module__ == "builtins"
            and cand.__name__ not in _UNMIXABLE
        ):
            return cand
    return None  # pragma: no cover - every Exception MRO reaches Exception


def _class_spec(
    cls: type[SnakepitError],
) -> type[SnakepitError] | tuple[type[SnakepitError], type[BaseException]]:
    return _REMOTE_SPECS.get(cls, cls)


def remote_class(base: type[_E], builtin: type[BaseException] | None) -> type[_E]:
    """A subclass of ``base`` that is also an instance of the built-in ``builtin``.

    ``remote_class(PythonError, KeyError)`` is ``RemoteKeyError``, so a
    ``KeyError`` raised in a worker can still be caught with ``except KeyError``.
    Classes are created once per pair and cached; instances pickle through the
    pair, so the receiving process recreates the same class. When the pair
    cannot be combined (``builtin`` is ``None``, ``Exception``, already a base,
    or not a mixable built-in) ``base`` itself is returned.
    """
    if builtin is None or builtin is Exception or issubclass(base, builtin):
        return base
    allowed = builtin_exception_type(builtin.__name__)
    if allowed is None or allowed is not builtin:
        return base
    key = (cast("type[SnakepitError]", base), allowed)
    with _REMOTE_LOCK:
        cached = _REMOTE_CLASSES.get(key)
        if cached is not None:
            return cast("type[_E]", cached)
        if base is PythonError:
            name = f"Remote{allowed.__name__}"
        else:
            name = f"{base.__name__}[{allowed.__name__}]"
        try:
            created = type(
                name,
                (base, allowed),
                {
                    "__module__": base.__module__,
                    "__qualname__": name,
                    "__doc__": (
                        f"{base.__name__} raised remotely as {allowed.__name__}; "
                        f"catchable as either."
                    ),
                },
            )
        except TypeError:
            # Incompatible instance layouts: fall back to the plain class.
            return base
        _REMOTE_CLASSES[key] = created
        _REMOTE_SPECS[created] = key
        return cast("type[_E]", created)


# ----------------------------------------------------------------- C core status


class CoreStatus(enum.IntEnum):
    """Status codes of the C core (``sp_status`` in ``csrc/snakepit_core.h``)."""

    OK = 0
    INVALID = -1
    NAME = -2
    MAGIC = -3
    VERSION = -4
    SIZE = -5
    RANGE = -6
    NOSPACE = -7
    CAP = -8
    NOMEM = -9
    NOTFOUND = -10
    EXISTS = -11
    PERM = -12
    OS = -13
    REFCOUNT = -14
    OVERFLOW = -15


_DESCRIPTOR_REASONS: dict[CoreStatus, str] = {
    CoreStatus.NAME: "the region name is not of the form /snakepit-<pid>-<16 hex digits>",
    CoreStatus.MAGIC: (
        "the region header magic is wrong: not a snakepit region, or its memory was overwritten"
    ),
    CoreStatus.VERSION: "the region layout version is not supported by this build",
    CoreStatus.SIZE: "the region size disagrees with its header or with the descriptor",
    CoreStatus.RANGE: "the offset/length lies outside the region's data",
    CoreStatus.OVERFLOW: "the descriptor's size arithmetic overflows",
    CoreStatus.NOTFOUND: ("no such region: it was already released, or its owner process died"),
    CoreStatus.PERM: "permission denied: the region belongs to another user",
}

_GENERIC_REASONS: dict[CoreStatus, str] = {
    CoreStatus.INVALID: "invalid argument",
    CoreStatus.NOMEM: "out of memory (malloc/mmap failed)",
    CoreStatus.EXISTS: "the region already exists",
    CoreStatus.OS: "operating system error",
    CoreStatus.REFCOUNT: "reference count would drop below zero, or the block is not live",
}


def _shm_free_bytes() -> int | None:
    try:
        st = os.statvfs(_SHM_DIR)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def from_core_status(
    status: int,
    os_errno: int,
    *,
    operation: str,
    name: str | None = None,
    requested: int | None = None,
    available: int | None = None,
) -> SnakepitError:
    """Translate a failing C-core status into the matching snakepit exception.

    Args:
        status: The ``sp_status`` code (negative; ``0`` is not an error).
        os_errno: ``sp_last_errno()`` after the failing call (0 if none).
        operation: What was attempted, for the message (``"attach region"``).
        name: The region name involved, when there is one.
        requested: Bytes asked for, for allocation failures.
        available: Bytes left, for allocation failures. For ``NOSPACE`` it
            defaults to the free space of ``/dev/shm`` measured now.

    Returns:
        The exception to raise (the caller raises it, keeping its own frame).

    Raises:
        ValueError: ``status`` is ``SP_OK``.
    """
    if status == CoreStatus.OK:
        raise ValueError("from_core_status() called with SP_OK, which is not an error")
    where = f" for region {name!r}" if name else ""
    err = f" ({os.strerror(os_errno)}, errno {os_errno})" if os_errno else ""
    try:
        code: CoreStatus | None = CoreStatus(status)
    except ValueError:
        code = None
    if code is None:
        return SharedMemoryError(
            f"{operation} failed{where}: unknown core status {status}{err}",
            name=name,
            status=status,
            os_errno=os_errno or None,
        )
    if code in _DESCRIPTOR_REASONS:
        reason = _DESCRIPTOR_REASONS[code]
        return InvalidDescriptorError(
            f"{operation} failed{where}: {reason}",
            reason=reason,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is CoreStatus.NOSPACE:
        if available is None:
            available = _shm_free_bytes()
        return SharedMemoryExhaustedError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left in {_SHM_DIR}{err}",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is CoreStatus.CAP:
        return SharedMemoryCapError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left under snakepit's shared-memory cap",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
        )
    reason = _GENERIC_REASONS.get(code, code.name.lower())
    return SharedMemoryError(
        f"{operation} failed{where}: {reason}{err}",
        name=name,
        status=int(code),
        os_errno=os_errno or None,
    )
