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

This module imports nothing from snakepit but the display settings
(:mod:`snakepit.errors._config`): every other layer (including the Cython core)
depends on it, never the reverse.
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

from snakepit.errors._config import settings

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
    "PoolClosedError",
    "PythonError",
    "RemoteTraceback",
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
        remote_causes: The remote ``__cause__``/``__context__`` chain, outermost
            first, each rebuilt as a snakepit error (set by
            :func:`record_to_exception`; empty otherwise).

    When ``remote_traceback`` is set (and ``configure(show_remote_traceback=True)``,
    the default), a :class:`RemoteTraceback` holding it is chained as
    ``__cause__``, so a printed traceback shows the worker's frames above the
    local ones, as :mod:`concurrent.futures` does for process pools.
    """

    __match_args__: ClassVar[tuple[str, ...]] = ("message",)

    message: _Field[str | None, str] = _Field(None)
    _: KW_ONLY
    suggestion: str | None = None
    remote_traceback: str | None = None
    remote_type: str | None = None
    remote_causes: tuple[SnakepitError, ...] = dataclasses.field(default=(), init=False)

    def __post_init__(self) -> None:
        # The defaults are built from the subclass fields, so they can only be
        # filled in once the generated __init__ has set every field.
        if vars(self)["message"] is None:
            self.message = self._default_message()
        if self.suggestion is None:
            self.suggestion = self._default_suggestion()
        super().__init__(self.message)
        self._attach_remote_traceback()

    def _attach_remote_traceback(self) -> None:
        """Chain a :class:`RemoteTraceback` as ``__cause__`` (if enabled and free)."""
        if (
            self.remote_traceback
            and self.__cause__ is None
            and settings().show_remote_traceback
            and not isinstance(self, RemoteTraceback)
        ):
            self.__cause__ = RemoteTraceback(text=self.remote_traceback)

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
        return _with_suggestion(self.message, self.suggestion)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The whole instance dict travels (fields, suggestion, remote data and any
        # __notes__), so no subclass needs its own pickling code. Dynamically
        # created "catchable as KeyError" classes are not importable by name, so
        # they travel as the (base, builtin) pair that recreates them.
        return (_reconstruct, (_class_spec(type(self)), self.args, dict(self.__dict__)))


def _with_suggestion(text: str, suggestion: str | None) -> str:
    if suggestion and settings().show_suggestions:
        return f"{text}\nSuggestion: {suggestion}"
    return text


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
    obj._attach_remote_traceback()
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
        return _with_suggestion(head, self.suggestion)


@_error_fields
class RemoteTraceback(SnakepitError):  # noqa: N818 - a traceback carrier, never raised
    """The formatted traceback of an error raised in a worker process.

    Never raised: it is chained as ``__cause__`` of the error the supervisor
    raises, so the standard traceback printout shows the remote frames,
    followed by "The above exception was the direct cause of the following
    exception" and the local frames (what :mod:`concurrent.futures` does
    with its ``_RemoteTraceback``). See
    :func:`snakepit.errors.configure` to turn it off.

    Attributes:
        text: The remote traceback as formatted in the worker.
    """

    __match_args__ = ("text",)

    text: str = ""

    def _default_message(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# ---------------------------------------------------------------- shapes / dtypes


def _product(shape: Shape) -> int:
    result = 1
    for d in shape:
        result *= d
    return result


def _matmul_suggestion(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
        head = (
            f"matmul needs a.shape[-1] == b.shape[-2], but {_shape_text(a)} @ {_shape_text(b)} "
            f"has a.shape[-1] = {a[-1]} != b.shape[-2] = {b[-2]}"
        )
        if a[-1] == b[-1]:
            fix = (
                "transposing the second operand fits: a @ b.T (or b.transpose(-2, -1)) has "
                f"shape {_shape_text((*a[:-1], b[-2]))}"
            )
        elif a[-2] == b[-2]:
            fix = (
                "transposing the first operand fits: a.T @ b (or a.transpose(-2, -1) @ b) has "
                f"shape {_shape_text((a[-1], b[-1]))}"
            )
        elif a[-2] == b[-1]:
            fix = f"the operands look swapped: b @ a has shape {_shape_text((*b[:-1], a[-1]))}"
        else:
            fix = (
                f"no transpose fits (a.T @ b needs {a[-2]} == {b[-2]}, a @ b.T needs "
                f"{a[-1]} == {b[-1]}): check which tensors are multiplied; if b is a layer's "
                f"weight, the layer expects inputs whose last dimension is {b[-2]}"
            )
        return f"{head}; {fix}"
    if a is not None and b is not None and len(a) >= 2 and len(b) == 1:
        return (
            f"matrix @ vector needs a.shape[-1] == len(v), but {a[-1]} != {b[0]}; if the vector "
            f"belongs on the left use v @ a (needs a.shape[-2] == {b[0]}), otherwise transpose "
            "the matrix (a.T) or reshape the vector"
        )
    if a is not None and b is not None and len(a) == 1 and len(b) == 1:
        return (
            f"the inner dimensions differ: the first operand's last dimension is {a[0]} but the "
            f"second's second-to-last is {b[0]}; transpose the operand whose inner dimension is "
            "wrong (x.T / x.transpose(-2, -1)) or reshape it"
        )
    return (
        "matmul needs the last dimension of the first operand to equal the second-to-last "
        "of the second; transpose one operand (x.T / x.transpose(-2, -1)) or reshape it"
    )


def _reshape_suggestion(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) == 1:
        known = _product(tuple(d for d in b if d >= 0))
        target = _shape_text(b)
        if any(d < 0 for d in b):
            return (
                f"{a[0]} elements cannot be reshaped to {target}: the known dimensions multiply "
                f"to {known}, which does not divide {a[0]}; change them so their product divides "
                f"{a[0]}"
            )
        return (
            f"{a[0]} elements cannot be reshaped to {target} ({known} elements); pick a shape "
            f"whose product is {a[0]}, or put -1 in one dimension to have it inferred"
        )
    return (
        "a reshape/view must keep the number of elements; pick a target shape whose "
        "product matches the input size, or use -1 for one dimension to let it be inferred"
    )


def _pair_text(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) == len(b) == 1:
        return f"{a[0]} vs {b[0]}"
    return f"{_shape_text(a)} vs {_shape_text(b)}"


def _shape_suggestion(
    a: Shape | None, b: Shape | None, operation: str | None, dimension: int | None
) -> str:
    op = (operation or "").lower()
    both = a is not None and b is not None
    at = f" at dimension {dimension}" if dimension is not None else ""
    if op in {"matmul", "mm", "dot", "linear", "mv"}:
        return _matmul_suggestion(a, b)
    if op == "bmm":
        got = f" should be {list(a or ())} but are {list(b or ())}" if both else " do not fit"
        return (
            "batched matmul needs batch1 of shape (batch, n, k) and batch2 of shape "
            f"(batch, k, m): batch2's first two dimensions{got}; transpose batch2's last two "
            "dimensions (x.transpose(-2, -1)) if they are swapped, or fix the batch size"
        )
    if op == "reshape":
        return _reshape_suggestion(a, b)
    if op == "view":
        return (
            "the tensor is not contiguous in memory, so .view() cannot reinterpret it: use "
            ".reshape(...) (copies only when needed) or call .contiguous() before .view(...)"
        )
    if op in {"concatenate", "stack"}:
        if op == "stack":
            detail = f" ({_pair_text(a, b)})" if both else ""
            return (
                f"stack needs inputs of exactly the same shape{detail}; slice or pad them to "
                "one shape, or use concatenate/cat if they should be joined along an existing "
                "dimension"
            )
        detail = f" ({_pair_text(a, b)}{at})" if both else ""
        return (
            "concatenation needs the same size in every dimension except the one joined"
            f"{detail}; slice or pad the inputs to match, or join along the dimension where "
            "they differ"
        )
    if op == "conv" and a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
        return (
            f"the layer expects {a[1]} input channels but the input has {b[1]} (dimension 1 "
            f"of {_shape_text(b)}, laid out as (N, C, ...)); if the channels are last, permute "
            "them first (x.permute(0, 3, 1, 2) for NHWC images), otherwise set the layer's "
            f"in_channels to {b[1]}"
        )
    if op == "normalize":
        detail = f" ({_pair_text(a, b)})" if both else ""
        return (
            f"the normalisation layer was built for another feature size{detail}; build it "
            "with the input's feature size (BatchNorm1d(C) for (N, C), LayerNorm(shape of the "
            "trailing dimensions))"
        )
    if op == "length":
        detail = f" ({_pair_text(a, b)})" if both else ""
        return (
            f"the inputs have different lengths{detail}; every column/array must have the "
            "same number of rows: look for a dropped or duplicated row, or align them first "
            "(e.g. reindex or merge on a key)"
        )
    if op == "features" and a is not None and b is not None:
        return (
            f"the model expects {b[0]} features but the input has {a[0]}; pass the same "
            "columns, in the same order, as during fit/training (or rebuild the model for "
            f"{a[0]} input features)"
        )
    if op == "ndim":
        shape = f" (got shape {_shape_text(a)})" if a is not None else ""
        return (
            f"the input has the wrong number of dimensions{shape}; use x.reshape(-1, 1) for a "
            "single feature, x.reshape(1, -1) for a single sample, or x.ravel() for a 1-d target"
        )
    if op == "samples":
        shape = f" (shape {_shape_text(a)})" if a is not None else ""
        return f"the input has no samples{shape}; check the filtering or split that produced it"
    if op == "linalg":
        return (
            "this linear-algebra routine needs square matrices in the last two dimensions "
            "(or operands whose sizes agree); check x.shape[-2:] and transpose or slice it"
        )
    if a is not None and b is not None and dimension is not None and len(a) == len(b) == 1:
        return (
            f"sizes {a[0]} and {b[0]} differ at dimension {dimension}; reshape or slice one "
            "tensor so they match there, or make one of them 1 there so it broadcasts"
        )
    if both:
        return (
            f"shapes {_shape_text(a)} and {_shape_text(b)} cannot be broadcast: aligned from the "
            "right, each pair of dimensions must be equal or 1; reshape one operand "
            "(x.reshape(...)) or add a size-1 axis (x[:, None] / x.unsqueeze(dim)) to line them up"
        )
    return "check the operand shapes; reshape or broadcast them so the dimensions line up"


def _shape_tuple(values: Sequence[Sequence[int]] | None) -> tuple[Shape, ...] | None:
    if values is None:
        return None
    return tuple(tuple(int(d) for d in shape) for shape in values)


@_error_fields
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

    shape_a: _Field[Sequence[int] | None, Shape | None] = _Field(None, _as_shape)
    shape_b: _Field[Sequence[int] | None, Shape | None] = _Field(None, _as_shape)
    operation: str | None = None
    dimension: int | None = _converted(None, _optional_int)
    shapes: _Field[Sequence[Sequence[int]] | None, tuple[Shape, ...]] = _Field(None)

    def __post_init__(self) -> None:
        given = _shape_tuple(vars(self)["shapes"])
        if given is None:
            given = tuple(s for s in (self.shape_a, self.shape_b) if s is not None)
        self.shapes = given
        super().__post_init__()

    def _default_message(self) -> str:
        where = f" at dimension {self.dimension}" if self.dimension is not None else ""
        op = self.operation or "operation"
        return (
            f"shape mismatch in {op}: {_shape_text(self.shape_a)} vs "
            f"{_shape_text(self.shape_b)}{where}"
        )

    def _default_suggestion(self) -> str | None:
        return _shape_suggestion(self.shape_a, self.shape_b, self.operation, self.dimension)


# Names a suggestion can put after numpy./torch. as they are.
_CONCRETE_DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }
)


@_error_fields
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
        got = f"the {self.got} operand" if self.got else "the mismatched operand"
        if self.expected == "bfloat16":  # a PyTorch/JAX dtype NumPy does not have
            return f"cast {got} to bfloat16: x.to(torch.bfloat16) for PyTorch"
        if self.expected in _CONCRETE_DTYPES:
            return (
                f"cast {got} to {self.expected}: x.astype(numpy.{self.expected}) for NumPy, "
                f"x.to(torch.{self.expected}) for PyTorch, or col.astype('{self.expected}') "
                "for pandas"
            )
        if self.expected:
            return (
                f"convert {got} to {self.expected} before the operation (e.g. "
                "pandas.to_numeric(...), x.astype(...), x.to(dtype)); inputs of mixed types "
                "need an explicit conversion"
            )
        if self.got:
            return (
                f"{self.got} is not supported here; cast to a supported dtype first "
                "(x.astype(...) / x.to(dtype)), e.g. a floating-point type for arithmetic"
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


_GPU_PREFIXES = ("cuda", "gpu", "mps", "xpu", "rocm", "hip", "tpu")


def _oom_figures(requested: int | None, available: int | None, total: int | None) -> str:
    if requested is None:
        return ""
    parts = [f"the allocation asked for {format_bytes(requested)}"]
    if available is not None:
        of_total = f" of {format_bytes(total)}" if total is not None else ""
        parts.append(f"with {format_bytes(available)} free{of_total}")
    elif total is not None:
        parts.append(f"on a device of {format_bytes(total)}")
    text = " ".join(parts)
    if available is not None and requested > available:
        text += (
            f": the allocation is {format_bytes(requested - available)} larger than the free memory"
        )
    return text + "; "


@_error_fields
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

    requested: int | None = _converted(None, _optional_int)
    available: int | None = _converted(None, _optional_int)
    total: int | None = _converted(None, _optional_int)
    framework: str | None = None

    def _default_message(self) -> str:
        return (
            f"out of memory on {self.device or 'device'}: tried to allocate "
            f"{format_bytes(self.requested)} with {format_bytes(self.available)} free "
            f"of {format_bytes(self.total)}"
        )

    def _default_suggestion(self) -> str | None:
        figures = _oom_figures(self.requested, self.available, self.total)
        device = (self.device or "").lower()
        gpu = device.startswith(_GPU_PREFIXES) or (not device and self.framework in {"jax", "cupy"})
        if not gpu:
            return (
                f"{figures}reduce the batch size or process the data in chunks, use a smaller "
                "dtype (float32/float16 instead of float64), and drop references to large "
                "arrays you no longer need"
            )
        if self.framework == "jax":
            return (
                f"{figures}reduce the batch size, use lower precision (bfloat16), donate input "
                "buffers (jax.jit(..., donate_argnums=...)), and if other processes share the "
                "GPU stop JAX from preallocating it (XLA_PYTHON_CLIENT_PREALLOCATE=false or a "
                "smaller XLA_PYTHON_CLIENT_MEM_FRACTION)"
            )
        if self.framework == "cupy":
            return (
                f"{figures}reduce the batch size or process the data in chunks, use float32 "
                "or float16, and return cached blocks to the driver "
                "(cupy.get_default_memory_pool().free_all_blocks())"
            )
        return (
            f"{figures}reduce the batch size, use lower precision (float16/bfloat16 or "
            "torch.autocast), and release cached memory (del unused tensors, then "
            "torch.cuda.empty_cache()); if much memory is reserved but unallocated, set "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
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


@_error_fields
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
        return (
            "submit calls before shutdown() (or inside the `with Pool(...)` block), or "
            "create a new Pool"
        )


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
    NO_DRIVER = -16
    CUDA = -17


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


def _device_error(code: CoreStatus, operation: str) -> SnakepitError:
    if code is CoreStatus.NO_DRIVER:
        return DeviceNotAvailableError(
            device="cuda",
            reason=f"{operation} failed: the CUDA driver (libcuda.so.1) is missing or unusable",
        )
    return DeviceError(f"{operation} failed: the CUDA driver returned an error")


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
    if code in (CoreStatus.NO_DRIVER, CoreStatus.CUDA):
        return _device_error(code, operation)
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
