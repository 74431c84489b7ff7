"""The shared pieces of the corpus: :class:`Case`, capturing real errors, raising rebuilt ones.

Expectations are stated from the inputs (the shapes and dtypes fed in), never
copied from a message.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from snakepit.errors import DtypeError, PythonError, ShapeError, SnakepitError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

# What the injected memory probe "measures" on the GPU (see fake_probe).
PROBE_FREE = 3 * GIB + 512 * MIB
PROBE_TOTAL = 80 * GIB
PROBE_USED = PROBE_TOTAL - PROBE_FREE

Shape = tuple[int, ...]


def fake_probe(device: str) -> Mapping[str, int]:
    """Stands in for NVML, so OOM records get device figures without a GPU."""
    return {"free": PROBE_FREE, "total": PROBE_TOTAL, "used": PROBE_USED}


@dataclass(frozen=True)
class Case:
    """One real error and what the classifier must make of it.

    ``shapes`` is every shape :class:`ShapeError` must report (``()`` when the
    message names none; ``None`` for other kinds), ``pair`` its
    ``(shape_a, shape_b)`` when that is not ``shapes[:2]``. ``dtypes`` is
    ``(expected, got)``; ``devices``/``device`` and the memory figures
    likewise. ``None`` means "not applicable", except for OOM figures where
    ``None`` must come back as ``None``.
    """

    library: str
    name: str
    error: BaseException
    kind: type[SnakepitError]
    shapes: tuple[Shape, ...] | None = None
    pair: tuple[Shape | None, Shape | None] | None = None
    operation: str | None = None
    dimension: int | None = None
    dtypes: tuple[str | None, str | None] | None = None
    devices: tuple[str, ...] | None = None
    device: str | None = None
    requested: int | None = None
    available: int | None = None
    total: int | None = None
    framework: str | None = None
    source: str | None = None
    unordered: bool = False
    grown: bool = False
    """Added when the corpus grew past 145 cases (issue 15); the held-out draw is among these."""

    @property
    def id(self) -> str:
        return f"{self.library}-{self.name}"


def capture(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (library warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except BaseException as exc:  # the whole point is to keep it
            return exc
    raise AssertionError(f"{fn!r} raised nothing")


def _case(
    library: str, name: str, fn: Callable[[], object], kind: type[SnakepitError], **kw: Any
) -> Case:
    try:
        error = capture(fn)
    except AssertionError as exc:
        raise AssertionError(f"{library}-{name}: {exc}") from None
    return Case(library, name, error, kind, **kw)


def _format_size(size: int) -> str:
    """c10's ``format_size`` (c10/cuda/CUDACachingAllocator.cpp), used by torch OOM messages."""
    if size <= 1024:
        return f"{size} bytes"
    if size <= 1048576:
        return f"{size / 1024.0:.2f} KiB"
    if size <= 1073741824:
        return f"{size / 1048576.0:.2f} MiB"
    return f"{size / 1073741824.0:.2f} GiB"


def _denoted(text: str) -> int:
    """The byte count a formatted size stands for ("2.00 GiB" -> 2147483648)."""
    number, unit = text.split()
    factor = {"bytes": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB}[unit]
    return round(float(number) * factor)


def _throw(exc: BaseException) -> None:
    raise exc


def _raised(module: str, name: str, base: type[BaseException], message: str) -> BaseException:
    """A raised instance of a stand-in for ``module.name`` (real type names, no import)."""
    if module == "builtins":
        return capture(lambda: _throw(base(message)))
    cls = type(name, (base,), {"__module__": module, "__qualname__": name})
    return capture(lambda: _throw(cls(message)))


def _cupy_message(size: int, total: int, limit: int = 0) -> str:
    # cupy/cupy cupy/cuda/memory.pyx, class OutOfMemoryError.__init__
    if limit == 0:
        msg = f"Out of memory allocating {size:,} bytes"
        if total != -1:
            msg += f" (allocated so far: {total:,} bytes)."
        return msg
    return (
        f"Out of memory allocating {size:,} bytes "
        f"(allocated so far: {total:,} bytes, limit set to: {limit:,} bytes)."
    )


# Short forms for the grown corpus: one line per case where it fits.


def shape_case(
    library: str, name: str, fn: Callable[[], object], *shapes: Shape, **kw: Any
) -> Case:
    """A :class:`ShapeError` case; ``shapes`` are the operand shapes the message must yield."""
    return _case(library, name, fn, ShapeError, shapes=shapes, **kw)


def dtype_case(
    library: str, name: str, fn: Callable[[], object], expected: str | None, got: str | None
) -> Case:
    """A :class:`DtypeError` case with its ``(expected, got)`` pair."""
    return _case(library, name, fn, DtypeError, dtypes=(expected, got))


def plain_case(library: str, name: str, fn: Callable[[], object]) -> Case:
    """A case the classifier must leave a :class:`PythonError`."""
    return _case(library, name, fn, PythonError)
