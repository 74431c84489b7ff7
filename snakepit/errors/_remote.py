"""Carry exceptions across the worker/supervisor boundary (``docs/errors.md``, "Records").

The worker calls :func:`exception_to_record` on whatever user code raised and
sends the resulting plain dict (JSON- and pickle-safe: only str, int, float,
bool, None, lists and dicts; every string encodes as UTF-8). The supervisor
calls :func:`record_to_exception` to turn it into the matching
:class:`~snakepit.errors.SnakepitError` subclass with a concrete suggestion.

Records come from another process, so the supervisor side treats them as
untrusted data: every field is type-checked and anything odd degrades to a
plain :class:`PythonError` rather than raising.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING

from snakepit._util import format_bytes
from snakepit.errors._base import (
    SnakepitError,
    builtin_exception_type,
    registered_classes,
    remote_class,
)
from snakepit.errors._cancelled import CallCancelledError  # noqa: F401 - registered by name
from snakepit.errors._hierarchy import (
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    OutOfMemoryError,
    PythonError,
    SerializationError,
    ShapeError,
)

if TYPE_CHECKING:
    from snakepit.errors._advice import Shape
    from snakepit.errors._probe import MemoryProbe

#: Imported on first use (the parsers cost a worker ~10 ms at start-up;
#: the worker template imports them once its first workers are out).
DEFERRED_IMPORTS = ("snakepit.errors._parse", "snakepit.errors._probe")

__all__ = ["RECORD_VERSION", "exception_to_record", "record_to_exception"]

RECORD_VERSION = 1
"""Version of the record layout, stored in every record under ``"version"``."""

# Bounds keep one pathological exception (a 10 MB message, a cycle of causes)
# from bloating the channel or hanging the extractor.
_MAX_CHAIN = 8
_MAX_MESSAGE_CHARS = 20_000
_MAX_TRACEBACK_CHARS = 100_000
_MAX_NOTES = 32
_MAX_REASON_CHARS = 200

# Every class by name, as the class decorator registered them: records name
# their class, and only these names are ever looked up.
_HIERARCHY: Mapping[str, type[SnakepitError]] = registered_classes()

# ----------------------------------------------------------------- text helpers


def _clean(text: str) -> str:
    """``text`` made encodable as UTF-8: lone surrogates become ``\\udcxx`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    # Keep both ends: the head says what was called, the tail where it failed.
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters omitted] ...\n{text[-half:]}"


def _text(value: object, limit: int) -> str:
    """``value`` if it is a str (cleaned and bounded), else its type name."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    # Cleaned first: escaping lone surrogates makes text longer (1 -> 6 chars).
    return _truncate(_clean(str.__str__(value)), limit)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str.__str__(str(exc))  # a plain str even if __str__ returned a subclass
    except Exception:  # a broken __str__ must not lose the whole error
        try:
            text = repr(exc)
        except Exception:
            return f"<unprintable {_type_name(type(exc))}>"
    return _truncate(_clean(text), _MAX_MESSAGE_CHARS)


def _type_name(cls: type) -> str:
    name = getattr(cls, "__name__", None)
    return name if isinstance(name, str) else "BaseException"


# ------------------------------------------------------------------ worker side


def _qualified(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    module = module if isinstance(module, str) else "<unknown>"
    qualname = qualname if isinstance(qualname, str) else _type_name(cls)
    return _clean(f"{module}.{qualname}")


def _builtin_base(cls: type) -> str:
    for cand in cls.__mro__:
        if cand.__module__ == "builtins" and cand is not object:
            return cand.__name__
    return "BaseException"  # pragma: no cover - every exception has a builtin base


def _json_safe(value: object, depth: int = 0) -> object:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _clean(value)
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, Mapping):
        return {_clean(str(k)): _json_safe(v, depth + 1) for k, v in value.items()}
    try:
        return _clean(repr(value))
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _snakepit_section(exc: SnakepitError) -> dict[str, object]:
    # The first class of the MRO that the supervisor can look up by name; the
    # dynamic "catchable as KeyError" classes are recreated from builtin_type.
    name = next(
        (c.__name__ for c in type(exc).__mro__ if _HIERARCHY.get(c.__name__) is c),
        "SnakepitError",
    )
    skip = {"message", "remote_traceback", "remote_type", "remote_causes", "__notes__"}
    fields = {k: _json_safe(v) for k, v in vars(exc).items() if k not in skip}
    return {"class": name, "fields": fields}


def _notes(exc: BaseException) -> list[str]:
    try:
        notes = exc.__dict__.get("__notes__", ()) if hasattr(exc, "__dict__") else ()
        if not isinstance(notes, (list, tuple)):
            return []
        return [_text(n, _MAX_MESSAGE_CHARS) for n in notes[:_MAX_NOTES] if isinstance(n, str)]
    except Exception:
        return []


def _format_traceback(exc: BaseException, *, chain: bool) -> str | None:
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=chain))
    except Exception:  # e.g. __notes__ that is not a sequence (Python < 3.12)
        try:
            text = "".join(traceback.format_tb(exc.__traceback__))
        except Exception:
            return None
    return _truncate(_clean(text), _MAX_TRACEBACK_CHARS)


def _single_record(exc: BaseException, *, chain: bool) -> dict[str, object]:
    from snakepit.errors._parse import parse_context

    cls = type(exc)
    message = _safe_str(exc)
    python_type = _clean(_type_name(cls))
    qualified = _qualified(cls)
    module = qualified.rpartition(".")[0] if "." in qualified else "builtins"
    if isinstance(exc, PythonError):
        # Re-raised remote errors keep the original user-facing identity.
        python_type = _text(exc.python_type, 200)
        qualified = _text(exc.qualified_type, 400)
        module = qualified.rpartition(".")[0]
        message = _text(exc.message, _MAX_MESSAGE_CHARS)
    elif isinstance(exc, SnakepitError):
        # Its suggestion travels as a field: str(exc) would carry it twice.
        message = _text(exc.message, _MAX_MESSAGE_CHARS)
    builtin = _builtin_base(cls)
    tb_text = _format_traceback(exc, chain=chain)
    record: dict[str, object] = {
        "version": RECORD_VERSION,
        "python_type": python_type,
        "qualified_type": qualified,
        "module": _clean(module),
        "builtin_type": builtin,
        "message": message,
        "traceback": tb_text if tb_text is not None else f"{python_type}: {message}\n",
        "notes": _notes(exc),
        "context": parse_context(
            message, python_type, qualified_type=qualified, builtin_type=builtin
        ),
    }
    if isinstance(exc, SnakepitError):
        with contextlib.suppress(Exception):  # the record is complete without it
            record["snakepit"] = _snakepit_section(exc)
    return record


def _fallback_record(exc: BaseException, problem: BaseException) -> dict[str, object]:
    """The least a record can say, for exceptions that defeat the full extractor."""
    name, qualified, builtin = "BaseException", "builtins.BaseException", ""
    with contextlib.suppress(Exception):
        name = _clean(_type_name(type(exc)))
        qualified = _qualified(type(exc))
        builtin = _builtin_base(type(exc))
    return {
        "version": RECORD_VERSION,
        "python_type": name,
        "qualified_type": qualified,
        "module": qualified.rpartition(".")[0],
        "builtin_type": builtin,
        "message": f"<error record could not be built: {type(problem).__name__}>",
        "traceback": "",
        "notes": [],
        "context": {},
        "causes": [],
    }


def _chain(exc: BaseException) -> list[dict[str, object]]:
    causes: list[dict[str, object]] = []
    seen = {id(exc)}
    current: BaseException = exc
    while len(causes) < _MAX_CHAIN:
        cause, context = current.__cause__, current.__context__
        if isinstance(cause, BaseException):
            nxt, relation = cause, "cause"
        elif isinstance(context, BaseException) and not current.__suppress_context__:
            nxt, relation = context, "context"
        else:
            break
        if id(nxt) in seen:  # exception chains can be cyclic
            break
        seen.add(id(nxt))
        try:
            record = _single_record(nxt, chain=False)
        except Exception as problem:
            record = _fallback_record(nxt, problem)
            record.pop("causes")
        record["relation"] = relation
        causes.append(record)
        current = nxt
    return causes


#: Most argument shapes a record carries.
_MAX_ARGUMENT_SHAPES = 8


def attach_argument_shapes(
    record: dict[str, object], args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Worker side: give a shape error's record the shapes of the call's arrays.

    Only where the message does not already name them: numpy's matmul names
    the mismatched core sizes (``size 2 is different from 4``), not the
    operands' shapes, which the user needs to see. Anything with a ``shape``
    tuple of ints counts (numpy, torch, JAX arrays), in argument order.
    """
    context = record.get("context")
    if not isinstance(context, dict) or context.get("category") != "shape":
        return
    shapes: list[list[int]] = []
    for value in (*args, *kwargs.values()):
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(type(size) is int for size in shape):
            shapes.append(list(shape))
            if len(shapes) == _MAX_ARGUMENT_SHAPES:
                break
    named = context.get("shapes")
    named_list = [list(item) for item in named] if isinstance(named, list) else []
    if len(shapes) < 2 or (named_list and all(item in shapes for item in named_list)):
        return
    context["argument_shapes"] = shapes


def exception_to_record(
    exc: BaseException, *, memory_probe: MemoryProbe | None = None
) -> dict[str, object]:
    """Turn any exception into a plain, JSON- and pickle-safe record (worker side).

    The record holds ``python_type`` (short name), ``qualified_type``
    (``module.Qual``), ``module``, ``builtin_type`` (nearest built-in base,
    e.g. ``ValueError`` for numpy's ``AxisError``), ``message``, ``traceback``
    (formatted, including chained exceptions), ``notes`` (``__notes__``),
    ``context`` (see :func:`parse_context`) and ``causes``: records of the
    ``__cause__``/``__context__`` chain, outermost first, at most 8 deep and
    cycle-safe, each with ``relation`` set to ``cause`` or ``context``.

    For an error classified as out-of-memory, ``context["memory"]["live"]``
    adds figures measured now: host memory, and for a GPU the device's free,
    total and used bytes from ``memory_probe`` (default
    :func:`nvml_memory_probe`, which imports ``pynvml`` lazily).

    Never raises (short of ``KeyboardInterrupt``-like interruptions): a broken
    ``__str__``/``__repr__``, a huge message, lone surrogates or a cyclic
    chain all still give a well-formed record.
    """
    try:
        record = _single_record(exc, chain=True)
        context = record["context"]
        if isinstance(context, dict) and context.get("category") == "oom":
            memory = context.get("memory")
            if isinstance(memory, dict):
                from snakepit.errors._probe import live_memory, nvml_memory_probe

                live = live_memory(memory.get("device"), memory_probe or nvml_memory_probe)
                if live:
                    memory["live"] = live
        record["causes"] = _chain(exc)
    except Exception as problem:
        return _fallback_record(exc, problem)
    return record


# -------------------------------------------------------------- supervisor side


def _str_field(record: Mapping[str, object], key: str, default: str) -> str:
    value = record.get(key)
    return value if isinstance(value, str) else default


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_field(mapping: Mapping[str, object], key: str) -> int | None:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):  # nan, inf
        return None


def _shape_list(value: object) -> list[Shape]:
    shapes: list[Shape] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (list, tuple)) and all(
                isinstance(d, int) and not isinstance(d, bool) for d in item
            ):
                shapes.append(tuple(item))
    return shapes


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def _broadcastable(a: Shape, b: Shape) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(a), reversed(b), strict=False))


def _conflicting_pair(shapes: list[Shape], operation: str | None) -> tuple[Shape, Shape]:
    """The first pair of operands that cannot broadcast (for 3+ operand broadcasts)."""
    if operation == "broadcast" and len(shapes) > 2:
        for i, a in enumerate(shapes):
            for b in shapes[i + 1 :]:
                if not _broadcastable(a, b):
                    return a, b
    return shapes[0], shapes[1]


def _rebuild_snakepit(
    section: Mapping[str, object], builtin: type[Exception] | None, message: str
) -> SnakepitError | None:
    cls = _HIERARCHY.get(_str_field(section, "class", ""))
    fields = section.get("fields")
    if cls is None or not isinstance(fields, Mapping):
        return None
    params = inspect.signature(cls.__init__).parameters
    kwargs = {
        k: v
        for k, v in fields.items()
        if isinstance(k, str) and k in params and k not in {"self", "message", "remote_traceback"}
    }
    try:
        return remote_class(cls, builtin)(message, **kwargs)
    except (TypeError, ValueError):
        return None


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _oom_error(
    context: Mapping[str, object], builtin: type[Exception] | None, message: str
) -> OutOfMemoryError:
    mem = _mapping(context.get("memory"))
    live = _mapping(mem.get("live"))
    device = _opt_str(mem.get("device"))
    gpu = device is not None and device != "cpu"
    available = _int_field(mem, "free")
    total = _int_field(mem, "total")
    # Figures from the message win; live measurements fill the gaps.
    limit = None if gpu else _int_field(live, "host_limit")
    if limit is not None and available is None and total is None:
        # A limit of the process (rlimit, cgroup) ran out, not the host: say so.
        from snakepit.errors._probe import LIMIT_KINDS

        used = _int_field(live, "host_limit_used") or 0
        kind = LIMIT_KINDS.get(_int_field(live, "host_limit_kind") or 0, "a memory limit")
        total, available = limit, max(0, limit - used)
        message = (
            f"{message} (the worker's {kind} of {format_bytes(limit)} was reached, "
            f"{format_bytes(used)} in use; the host has more)"
        )
    if available is None:
        available = _int_field(live, "device_free" if gpu else "host_available")
    if total is None:
        total = _int_field(live, "device_total" if gpu else "host_total")
    return remote_class(OutOfMemoryError, builtin)(
        message,
        device=device,
        requested=_int_field(mem, "requested"),
        available=available,
        total=total,
        framework=_opt_str(mem.get("framework")),
    )


def _from_context(
    context: Mapping[str, object],
    builtin: type[Exception] | None,
    *,
    message: str,
    python_type: str,
    qualified: str,
) -> SnakepitError:
    category = context.get("category")
    operation = _opt_str(context.get("operation"))
    if category == "oom":
        return _oom_error(context, builtin, message)
    if category == "device_unavailable":
        reason = message.strip().splitlines()[0] if message.strip() else None
        return remote_class(DeviceNotAvailableError, builtin)(
            message,
            device=_opt_str(context.get("device")),
            reason=reason[:_MAX_REASON_CHARS] if reason else None,
        )
    if category == "device":
        devices = _str_list(context.get("devices"))
        if devices:
            return remote_class(DeviceMismatchError, builtin)(message, devices=tuple(devices))
    if category == "dtype":
        dtypes = context.get("dtypes")
        pair = list(dtypes) if isinstance(dtypes, list) else []
        pair += [None, None]
        return remote_class(DtypeError, builtin)(
            message, expected=_opt_str(pair[0]), got=_opt_str(pair[1]), operation=operation
        )
    raw_shapes = context.get("shapes")
    shapes = _shape_list(raw_shapes)
    argument_shapes = _shape_list(context.get("argument_shapes"))
    if category == "shape" and len(argument_shapes) >= 2:
        # The message named only parts of the shapes (numpy's matmul names
        # the core sizes): the call's own arrays say more.
        shapes = argument_shapes
        raw_shapes = context.get("argument_shapes")
    # A message may name no shape at all ("all input arrays must have the same
    # shape"), but shapes that are there and unreadable mean a foreign record.
    if category == "shape" and (raw_shapes is None or shapes):
        dimension = _int_field(context, "dimension")
        if len(shapes) >= 2:
            a, b = (
                (shapes[0], shapes[1])
                if shapes is argument_shapes
                else _conflicting_pair(shapes, operation)
            )
            return remote_class(ShapeError, builtin)(
                message,
                shape_a=a,
                shape_b=b,
                operation=operation,
                dimension=dimension,
                shapes=tuple(shapes),
            )
        return remote_class(ShapeError, builtin)(
            message,
            shape_a=shapes[0] if shapes else None,
            operation=operation,
            dimension=dimension,
        )
    return remote_class(PythonError, builtin)(
        message, python_type=python_type, qualified_type=qualified
    )


def _build(record: Mapping[str, object]) -> SnakepitError:
    python_type = _str_field(record, "python_type", "Exception")
    qualified = _str_field(record, "qualified_type", f"builtins.{python_type}")
    message = _str_field(record, "message", "")
    # Only a type that really is (or derives from) a built-in may be caught as
    # one; a user class that happens to be called "KeyError" must not.
    builtin_name = _str_field(record, "builtin_type", "")
    if not builtin_name and qualified.startswith("builtins."):
        builtin_name = python_type
    builtin = builtin_exception_type(builtin_name) if builtin_name else None

    from snakepit.errors._parse import parse_context

    exc: SnakepitError | None = None
    section = record.get("snakepit")
    if isinstance(section, Mapping):
        exc = _rebuild_snakepit(section, builtin, message)
    if exc is None:
        context_obj = record.get("context")
        context: Mapping[str, object] = (
            context_obj
            if isinstance(context_obj, Mapping)
            else parse_context(
                message,
                python_type,
                qualified_type=qualified,
                builtin_type=builtin_name or None,
            )
        )
        try:
            exc = _from_context(
                context, builtin, message=message, python_type=python_type, qualified=qualified
            )
        except (TypeError, ValueError):  # fields of the wrong type from a foreign record
            exc = remote_class(PythonError, builtin)(
                message, python_type=python_type, qualified_type=qualified
            )
    tb = record.get("traceback")
    exc.remote_traceback = tb if isinstance(tb, str) and tb else None
    exc.remote_type = qualified
    exc._attach_remote_traceback()
    return exc


def _add_note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - 3.10 has no notes; the attribute still holds the text
        notes = list(getattr(exc, "__notes__", ()))
        notes.append(note)
        exc.__notes__ = notes  # type: ignore[attr-defined]


def record_to_exception(record: object) -> SnakepitError:
    """Turn a worker's error record into a snakepit exception (supervisor side).

    Shape, dtype, device and out-of-memory errors become :class:`ShapeError`,
    :class:`DtypeError`, :class:`DeviceMismatchError`,
    :class:`DeviceNotAvailableError` and :class:`OutOfMemoryError` with a
    concrete suggestion; snakepit errors raised in the worker come back as
    their own class; anything else becomes a :class:`PythonError`. When the
    remote type was (or derived from) a built-in exception, the result is also
    an instance of that built-in, so ``except KeyError`` keeps working.

    The remote traceback is kept in ``remote_traceback`` and, unless
    ``configure(show_remote_traceback=False)``, chained as ``__cause__`` (a
    :class:`RemoteTraceback`) so printed tracebacks show it. The remote cause
    chain is rebuilt in ``remote_causes`` and the remote ``__notes__`` are
    kept. A malformed record gives a :class:`SerializationError` (returned,
    not raised).
    """
    if not isinstance(record, Mapping):
        return SerializationError(
            f"malformed remote error record of type {type(record).__name__}",
            direction="decode",
        )
    exc = _build(record)
    notes = record.get("notes")
    if isinstance(notes, list):
        for note in notes[:_MAX_NOTES]:
            if isinstance(note, str):
                _add_note(exc, note)
    causes = record.get("causes")
    if isinstance(causes, list):
        rebuilt: list[SnakepitError] = []
        for cause_record in causes[:_MAX_CHAIN]:
            if not isinstance(cause_record, Mapping):
                break
            rebuilt.append(_build(cause_record))
        exc.remote_causes = tuple(rebuilt)
    return exc
