"""Carry exceptions across the worker/supervisor boundary (SPEC section 5).

The worker calls :func:`exception_to_record` on whatever user code raised and
sends the resulting plain dict (JSON- and pickle-safe: only str, int, float,
bool, None, lists and dicts). The supervisor calls :func:`record_to_exception`
to turn it into the matching :class:`~snakepit.errors.SnakepitError` subclass
with a concrete suggestion.

Records come from another process, so the supervisor side treats them as
untrusted data: every field is type-checked and anything odd degrades to a
plain :class:`PythonError` rather than raising.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from snakepit.errors._hierarchy import (
    CircuitOpenError,
    DeviceError,
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    InvalidDescriptorError,
    OutOfMemoryError,
    PythonError,
    SerializationError,
    ShapeError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
    WorkerCrashedError,
    WorkerError,
    WorkerTimeoutError,
    WorkerUnavailableError,
    builtin_exception_type,
    remote_class,
)

__all__ = ["RECORD_VERSION", "exception_to_record", "parse_context", "record_to_exception"]

RECORD_VERSION = 1
"""Version of the record layout, stored in every record under ``"version"``."""

# Bounds keep one pathological exception (a 10 MB message, a cycle of causes)
# from bloating the channel or hanging the extractor.
_MAX_CHAIN = 8
_MAX_MESSAGE_CHARS = 20_000
_MAX_TRACEBACK_CHARS = 100_000

_NOTE_HEADER = "Remote traceback (from the worker process):"

_HIERARCHY: dict[str, type[SnakepitError]] = {
    cls.__name__: cls
    for cls in (
        SnakepitError,
        PythonError,
        ShapeError,
        DtypeError,
        DeviceError,
        OutOfMemoryError,
        DeviceMismatchError,
        DeviceNotAvailableError,
        SerializationError,
        WorkerError,
        WorkerCrashedError,
        WorkerTimeoutError,
        WorkerUnavailableError,
        CircuitOpenError,
        SharedMemoryError,
        InvalidDescriptorError,
        SharedMemoryExhaustedError,
        SharedMemoryCapError,
    )
}

# ----------------------------------------------------------------- text helpers


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    # Keep both ends: the head says what was called, the tail where it failed.
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters omitted] ...\n{text[-half:]}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not lose the whole error
        try:
            return repr(exc)
        except Exception:
            return f"<unprintable {type(exc).__name__}>"


# ------------------------------------------------------------------ parse units

_UNITS: dict[str, int] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
    "eib": 1 << 60,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "eb": 10**18,
}

_SIZE = r"(\d+(?:\.\d*)?)\s*([KMGTPE]i?B|bytes?|B)\b"


def _to_bytes(number: str, unit: str) -> int | None:
    factor = _UNITS.get(unit.lower())
    if factor is None:
        return None
    return round(float(number) * factor)


# ------------------------------------------------------------------ parse dtypes

_TORCH_DTYPES: dict[str, str] = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "bfloat16": "bfloat16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "char": "int8",
    "byte": "uint8",
    "bool": "bool",
    "complexfloat": "complex64",
    "complexdouble": "complex128",
    "complexhalf": "complex32",
    "cfloat": "complex64",
    "cdouble": "complex128",
}


def _normalize_dtype(name: str) -> str:
    """Canonical dtype name: ``Float``/``torch.FloatTensor`` → ``float32`` etc."""
    raw = name.strip().strip("'\"")
    raw = raw.removeprefix("c10::").removeprefix("torch.").removeprefix("cuda.")
    raw = raw.removeprefix("numpy.").removeprefix("np.")
    if raw.endswith("Tensor"):
        raw = raw[: -len("Tensor")]
    lowered = raw.lower()
    if lowered in _TORCH_DTYPES:
        return _TORCH_DTYPES[lowered]
    # numpy byte-order prefixes ('<f8') stay as written; 'float64' is already canonical.
    return lowered


_DTYPE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # torch: "expected scalar type Float but found Double"
    (re.compile(r"expected scalar type (\w+) but found (\w+)"), "expected_got"),
    # torch: "expected m1 and m2 to have the same dtype, but got: float != double"
    (re.compile(r"same dtype,? but got:? ([\w:]+) (?:!=|and) ([\w:]+)"), "expected_got"),
    # torch: "result type Float can't be cast to the desired output type Long"
    (
        re.compile(r"result type (\w+) can't be cast to the desired output type (\w+)"),
        "got_expected",
    ),
    # torch: "Input type (double) and bias type (float) should be the same"
    (
        re.compile(r"Input type \(([\w.:]+)\) and (?:weight|bias) type \(([\w.:]+)\)"),
        "got_expected",
    ),
]

# numpy: "Cannot cast ufunc 'add' output from dtype('float64') to dtype('int64') ..."
_NUMPY_CAST = re.compile(
    r"Cannot cast ufunc '(\w+)' (?:output|input \d*\s*)\s*from dtype\('([^']+)'\) "
    r"to dtype\('([^']+)'\)"
)
_NUMPY_CAST_ARRAY = re.compile(
    r"Cannot cast array data from dtype\('([^']+)'\) to dtype\('([^']+)'\)"
)


def _parse_dtypes(message: str) -> dict[str, object] | None:
    m = _NUMPY_CAST.search(message)
    if m:
        return {
            "dtypes": [_normalize_dtype(m.group(3)), _normalize_dtype(m.group(2))],
            "operation": m.group(1),
        }
    m = _NUMPY_CAST_ARRAY.search(message)
    if m:
        return {"dtypes": [_normalize_dtype(m.group(2)), _normalize_dtype(m.group(1))]}
    for pattern, order in _DTYPE_PATTERNS:
        m = pattern.search(message)
        if m:
            first, second = m.group(1), m.group(2)
            expected, got = (first, second) if order == "expected_got" else (second, first)
            return {"dtypes": [_normalize_dtype(expected), _normalize_dtype(got)]}
    return None


# ----------------------------------------------------------------- parse devices

_DEVICE_PATTERNS: list[re.Pattern[str]] = [
    # torch < 2.6: "... but found at least two devices, cuda:0 and cpu!"
    re.compile(r"found at least two devices, ([\w:]+) and ([\w:]+?)!?(?:\s|$|\()"),
    # torch >= 2.6: "... but got mat2 is on cpu, different from other tensors on cuda:0"
    re.compile(r"is on ([\w:]+), different from other tensors on ([\w:]+)"),
]
_TENSOR_TYPE_DEVICES = re.compile(
    r"Input type \(([\w.:]+)\) and (?:weight|bias) type \(([\w.:]+)\) should be the same"
)


def _tensor_type_device(type_name: str) -> str:
    return "cuda" if ".cuda." in type_name or type_name.startswith("cuda") else "cpu"


def _parse_devices(message: str) -> list[str] | None:
    for pattern in _DEVICE_PATTERNS:
        m = pattern.search(message)
        if m:
            return [m.group(1), m.group(2)]
    m = _TENSOR_TYPE_DEVICES.search(message)
    if m:
        first, second = _tensor_type_device(m.group(1)), _tensor_type_device(m.group(2))
        if first != second:
            return [first, second]
    return None


# ------------------------------------------------------------------ parse shapes

_SHAPE_X = re.compile(r"\b(\d+(?:x\d+)+) and (\d+(?:x\d+)+)\b")
_SIZE_OF_TENSOR = re.compile(
    r"size of (?:the )?tensor(?: a)? \((\d+)\) must match the (?:existing )?size"
    r"(?: of tensor b)? \((\d+)\) at non-singleton dimension (\d+)"
)
_NUMPY_CORE_DIM = re.compile(
    r"mismatch in its core dimension (\d+).*?\(size (\d+) is different from (\d+)\)", re.DOTALL
)
_TORCH_SIZE = re.compile(r"torch\.Size\(\[([\d,\s]*)\]\)")
_TORCH_RESHAPE = re.compile(r"shape '\[([\d,\s-]*)\]' is invalid for input of size (\d+)")
_NUMPY_RESHAPE = re.compile(r"cannot reshape array of size (\d+) into shape \(([\d,\s-]*)\)")
# A parenthesised tuple of ints, not the remapped half of numpy's "(3,4)->(3,4)".
_TUPLE = re.compile(r"(?<!->)\((\s*\d+\s*(?:,\s*\d+\s*)*,?\s*|\s*)\)")
_SHAPE_WORDS = re.compile(r"shape|broadcast|aligned|size|dimension|match", re.IGNORECASE)


def _ints(text: str) -> list[int]:
    return [int(part) for part in re.findall(r"-?\d+", text)]


def _operation_from(message: str) -> str | None:
    lowered = message.lower()
    if (
        "matmul" in lowered
        or "cannot be multiplied" in lowered
        or "not aligned" in lowered
        or "mat1 and mat2" in lowered
        or "@" in message
    ):
        return "matmul"
    if "broadcast" in lowered:
        return "broadcast"
    if "reshape" in lowered or "view" in lowered:
        return "reshape"
    return None


def _parse_shapes(message: str) -> dict[str, object] | None:
    m = _SHAPE_X.search(message)
    if m and ("multipl" in message or "shape" in message):
        return {
            "shapes": [_ints(m.group(1)), _ints(m.group(2))],
            "operation": _operation_from(message) or "matmul",
        }
    m = _SIZE_OF_TENSOR.search(message)
    if m:
        return {
            "shapes": [[int(m.group(1))], [int(m.group(2))]],
            "dimension": int(m.group(3)),
            "operation": "broadcast",
        }
    m = _NUMPY_CORE_DIM.search(message)
    if m:
        # "(size 2 is different from 4)": operand 1 has 2 where operand 0 implies 4.
        return {
            "shapes": [[int(m.group(3))], [int(m.group(2))]],
            "dimension": int(m.group(1)),
            "operation": "matmul" if "matmul" in message else _operation_from(message),
        }
    m = _TORCH_RESHAPE.search(message)
    if m:
        return {"shapes": [[int(m.group(2))], _ints(m.group(1))], "operation": "reshape"}
    m = _NUMPY_RESHAPE.search(message)
    if m:
        return {"shapes": [[int(m.group(1))], _ints(m.group(2))], "operation": "reshape"}
    sizes = [_ints(s) for s in _TORCH_SIZE.findall(message)]
    if len(sizes) >= 2:
        return {"shapes": sizes[:2], "operation": _operation_from(message)}
    if _SHAPE_WORDS.search(message):
        tuples = [_ints(t) for t in _TUPLE.findall(message)]
        if len(tuples) >= 2:
            return {"shapes": tuples[:2], "operation": _operation_from(message)}
    return None


# ---------------------------------------------------------------------- parse OOM

_OOM_TYPES = frozenset({"MemoryError", "OutOfMemoryError", "_ArrayMemoryError"})
_OOM_WORDS = re.compile(
    r"out of memory|unable to allocate|not enough memory|failed to allocate|"
    r"cannot allocate memory|std::bad_alloc",
    re.IGNORECASE,
)
_OOM_REQUESTED = [
    re.compile(r"Tried to allocate " + _SIZE, re.IGNORECASE),
    re.compile(r"Unable to allocate " + _SIZE, re.IGNORECASE),
    re.compile(r"tried to allocate (\d+) (bytes)", re.IGNORECASE),
    re.compile(r"failed to allocate " + _SIZE, re.IGNORECASE),
]
_OOM_TOTAL = [
    re.compile(_SIZE + r" total capacity"),
    re.compile(r"total capacity of " + _SIZE),
    re.compile(r"max allowed: " + _SIZE),
]
_OOM_FREE = [
    re.compile(r"of which " + _SIZE + r" is free"),
    re.compile(_SIZE + r" free\b"),
]
_GPU_INDEX = re.compile(r"\(GPU (\d+);|\bGPU (\d+) has\b")


def _first_size(patterns: list[re.Pattern[str]], message: str) -> int | None:
    for pattern in patterns:
        m = pattern.search(message)
        if m:
            return _to_bytes(m.group(1), m.group(2))
    return None


def _is_oom(message: str, python_type: str | None) -> bool:
    return (python_type in _OOM_TYPES) or bool(_OOM_WORDS.search(message))


def _parse_oom(message: str, python_type: str | None) -> dict[str, object]:
    memory: dict[str, object] = {}
    lowered = message.lower()
    m = _GPU_INDEX.search(message)
    if m:
        memory["device"] = f"cuda:{m.group(1) or m.group(2)}"
    elif "cuda" in lowered or "hip " in lowered or "gpu" in lowered:
        memory["device"] = "cuda"
    elif "mps" in lowered:
        memory["device"] = "mps"
    elif (
        python_type in {"MemoryError", "_ArrayMemoryError"}
        or "cpu" in lowered
        or "unable to allocate" in lowered
    ):
        memory["device"] = "cpu"
    for key, patterns in (
        ("requested", _OOM_REQUESTED),
        ("total", _OOM_TOTAL),
        ("free", _OOM_FREE),
    ):
        value = _first_size(patterns, message)
        if value is not None:
            memory[key] = value
    return memory


def _live_memory(device: object) -> dict[str, int]:
    """Memory figures measured in the worker right now (best effort, never raises)."""
    live: dict[str, int] = {}
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
        total_pages = os.sysconf("SC_PHYS_PAGES")
        live["host_available"] = int(pages) * int(page_size)
        live["host_total"] = int(total_pages) * int(page_size)
    except (ValueError, OSError, AttributeError):
        pass
    # Only ask torch when the user code already imported it: importing torch
    # here would cost seconds and might itself fail in a low-memory worker.
    torch: Any = sys.modules.get("torch")
    if torch is not None and isinstance(device, str) and device.startswith("cuda"):
        try:
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            free, total = torch.cuda.mem_get_info(index)
            live["device_free"] = int(free)
            live["device_total"] = int(total)
        except Exception:  # a broken CUDA context is exactly the situation we are in
            pass
    return live


# ----------------------------------------------------------------------- context


def parse_context(message: str, python_type: str | None = None) -> dict[str, object]:
    """Parse shapes, dtypes, devices and OOM figures out of an error message.

    Returns a JSON-safe dict. ``category`` says what the message is about
    (``oom``, ``device``, ``dtype``, ``shape``) when it is recognised; the other
    keys (``shapes``, ``dimension``, ``operation``, ``dtypes``, ``devices``,
    ``memory``) are present only when found. ``dtypes`` is ``[expected, got]``.
    """
    context: dict[str, object] = {}
    if _is_oom(message, python_type):
        context["category"] = "oom"
        context["memory"] = _parse_oom(message, python_type)
        return context
    devices = _parse_devices(message)
    if devices:
        context["category"] = "device"
        context["devices"] = devices
        return context
    dtypes = _parse_dtypes(message)
    if dtypes:
        context["category"] = "dtype"
        context.update(dtypes)
        return context
    shapes = _parse_shapes(message)
    if shapes:
        context["category"] = "shape"
        context.update({k: v for k, v in shapes.items() if v is not None})
    return context


# ------------------------------------------------------------------ worker side


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _builtin_base(cls: type) -> str:
    for cand in cls.__mro__:
        if cand.__module__ == "builtins" and cand is not object:
            return cand.__name__
    return "BaseException"  # pragma: no cover - every exception has a builtin base


def _json_safe(value: object, depth: int = 0) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 4 and isinstance(value, (list, tuple)):
        return [_json_safe(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    return repr(value)


def _snakepit_section(exc: SnakepitError) -> dict[str, object]:
    # The first class of the MRO that the supervisor can look up by name; the
    # dynamic "catchable as KeyError" classes are recreated from builtin_type.
    name = next(
        (c.__name__ for c in type(exc).__mro__ if _HIERARCHY.get(c.__name__) is c),
        "SnakepitError",
    )
    skip = {"message", "remote_traceback", "remote_type", "__notes__"}
    fields = {k: _json_safe(v) for k, v in vars(exc).items() if k not in skip}
    return {"class": name, "fields": fields}


def _single_record(exc: BaseException, *, chain: bool) -> dict[str, object]:
    cls = type(exc)
    message = _truncate(_safe_str(exc), _MAX_MESSAGE_CHARS)
    python_type = cls.__name__
    qualified = _qualified(cls)
    if isinstance(exc, PythonError):
        # Re-raised remote errors keep the original user-facing identity.
        python_type, qualified = exc.python_type, exc.qualified_type
        message = exc.message
    try:
        tb_text = "".join(traceback.format_exception(cls, exc, exc.__traceback__, chain=chain))
    except Exception:
        tb_text = f"{python_type}: {message}\n"
    record: dict[str, object] = {
        "version": RECORD_VERSION,
        "python_type": python_type,
        "qualified_type": qualified,
        "module": cls.__module__,
        "builtin_type": _builtin_base(cls),
        "message": message,
        "traceback": _truncate(tb_text, _MAX_TRACEBACK_CHARS),
        "notes": [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str)],
        "context": parse_context(message, python_type),
    }
    if isinstance(exc, SnakepitError):
        record["snakepit"] = _snakepit_section(exc)
    return record


def exception_to_record(exc: BaseException) -> dict[str, object]:
    """Turn any exception into a plain, JSON- and pickle-safe record (worker side).

    The record holds ``python_type`` (short name), ``qualified_type``
    (``module.Qual``), ``module``, ``builtin_type`` (nearest built-in base,
    e.g. ``ValueError`` for numpy's ``AxisError``), ``message``, ``traceback``
    (formatted, including chained exceptions), ``notes``, ``context`` (see
    :func:`parse_context`; for OOM also ``memory.live`` measured now) and
    ``causes``: records of the ``__cause__``/``__context__`` chain, outermost
    first, at most 8 deep, each with ``relation`` set to ``cause`` or ``context``.
    """
    record = _single_record(exc, chain=True)
    context = record["context"]
    if isinstance(context, dict) and context.get("category") == "oom":
        memory = context.get("memory")
        if isinstance(memory, dict):
            live = _live_memory(memory.get("device"))
            if live:
                memory["live"] = live
    causes: list[dict[str, object]] = []
    seen = {id(exc)}
    current: BaseException = exc
    while len(causes) < _MAX_CHAIN:
        if current.__cause__ is not None:
            nxt, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            nxt, relation = current.__context__, "context"
        else:
            break
        if id(nxt) in seen:  # exception chains can be cyclic
            break
        seen.add(id(nxt))
        cause = _single_record(nxt, chain=False)
        cause["relation"] = relation
        causes.append(cause)
        current = nxt
    record["causes"] = causes
    return record


# -------------------------------------------------------------- supervisor side


def _str_field(record: Mapping[str, object], key: str, default: str) -> str:
    value = record.get(key)
    return value if isinstance(value, str) else default


def _int_field(mapping: Mapping[str, object], key: str) -> int | None:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _shape_list(value: object) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
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
        if isinstance(k, str) and k in params and k not in {"self", "message"}
    }
    try:
        return remote_class(cls, builtin)(message, **kwargs)
    except (TypeError, ValueError):
        return None


def _from_context(
    context: Mapping[str, object],
    builtin: type[Exception] | None,
    *,
    message: str,
    python_type: str,
    qualified: str,
) -> SnakepitError:
    category = context.get("category")
    if category == "oom":
        memory = context.get("memory")
        mem: Mapping[str, object] = memory if isinstance(memory, Mapping) else {}
        live_obj = mem.get("live")
        live: Mapping[str, object] = live_obj if isinstance(live_obj, Mapping) else {}
        device = mem.get("device")
        device_str = device if isinstance(device, str) else None
        gpu = device_str is not None and device_str != "cpu"
        available = _int_field(mem, "free")
        total = _int_field(mem, "total")
        # Figures from the message win; live measurements fill the gaps.
        if available is None:
            available = _int_field(live, "device_free" if gpu else "host_available")
        if total is None:
            total = _int_field(live, "device_total" if gpu else "host_total")
        return remote_class(OutOfMemoryError, builtin)(
            message,
            device=device_str,
            requested=_int_field(mem, "requested"),
            available=available,
            total=total,
        )
    if category == "device":
        devices = _str_list(context.get("devices"))
        if devices:
            return remote_class(DeviceMismatchError, builtin)(message, devices=devices)
    if category == "dtype":
        dtypes = _str_list(context.get("dtypes"))
        if len(dtypes) >= 2:
            operation = context.get("operation")
            return remote_class(DtypeError, builtin)(
                message,
                expected=dtypes[0],
                got=dtypes[1],
                operation=operation if isinstance(operation, str) else None,
            )
    if category == "shape":
        shapes = _shape_list(context.get("shapes"))
        if len(shapes) >= 2:
            operation = context.get("operation")
            return remote_class(ShapeError, builtin)(
                message,
                shape_a=shapes[0],
                shape_b=shapes[1],
                operation=operation if isinstance(operation, str) else None,
                dimension=_int_field(context, "dimension"),
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

    exc: SnakepitError | None = None
    section = record.get("snakepit")
    if isinstance(section, Mapping):
        exc = _rebuild_snakepit(section, builtin, message)
    if exc is None:
        context_obj = record.get("context")
        context: Mapping[str, object] = (
            context_obj if isinstance(context_obj, Mapping) else parse_context(message, python_type)
        )
        exc = _from_context(
            context, builtin, message=message, python_type=python_type, qualified=qualified
        )
    tb = record.get("traceback")
    exc.remote_traceback = tb if isinstance(tb, str) else None
    exc.remote_type = qualified
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

    Shape, dtype, device-mismatch and out-of-memory errors become
    :class:`ShapeError`, :class:`DtypeError`, :class:`DeviceMismatchError` and
    :class:`OutOfMemoryError` with a concrete suggestion; snakepit errors raised
    in the worker come back as their own class; anything else becomes a
    :class:`PythonError`. When the remote type was (or derived from) a
    built-in exception, the result is also an instance of that built-in, so
    ``except KeyError`` keeps working. The remote traceback is stored in
    ``remote_traceback`` and added as a note (shown by ``traceback``); the
    remote cause chain becomes ``__cause__``. A malformed record gives a
    :class:`SerializationError` (returned, not raised).
    """
    if not isinstance(record, Mapping):
        return SerializationError(
            f"malformed remote error record of type {type(record).__name__}",
            direction="decode",
        )
    exc = _build(record)
    if exc.remote_traceback:
        _add_note(exc, f"{_NOTE_HEADER}\n{exc.remote_traceback.rstrip()}")
    notes = record.get("notes")
    if isinstance(notes, list):
        for note in notes:
            if isinstance(note, str):
                _add_note(exc, note)
    causes = record.get("causes")
    if isinstance(causes, list):
        # Chained via __cause__ whatever the remote relation was: __context__
        # would be overwritten as soon as the supervisor raises the error.
        current: BaseException = exc
        for cause_record in causes[:_MAX_CHAIN]:
            if not isinstance(cause_record, Mapping):
                break
            cause = _build(cause_record)
            current.__cause__ = cause
            current = cause
    return exc
