"""The dtypes a TensorRef may carry, their numpy representation, and C-order strides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snakepit._util import DTYPE_NAMES
from snakepit.errors import DtypeError

if TYPE_CHECKING:
    import numpy as np

    #: numpy has no bfloat16; it travels as a raw 2-byte type tagged in the
    #: dtype's metadata, so the tag survives views, slicing and pickling.
    BFLOAT16: np.dtype[Any]

# numpy's dtypes by name, made on first use: importing this module imports
# no numpy (a worker whose calls hold no array never does).
_BY_NAME: dict[str, np.dtype[Any]] = {}

#: Every dtype name a TensorRef may carry (docs/zero-copy.md).
SUPPORTED_DTYPES: tuple[str, ...] = tuple(DTYPE_NAMES)


def _by_name() -> dict[str, np.dtype[Any]]:
    if not _BY_NAME:
        import numpy as np

        bfloat16 = np.dtype("V2", metadata={"snakepit": "bfloat16"})
        _BY_NAME.update(
            {name: bfloat16 if name == "bfloat16" else np.dtype(name) for name in DTYPE_NAMES}
        )
    return _BY_NAME


def __getattr__(name: str) -> Any:
    if name == "BFLOAT16":
        return _by_name()["bfloat16"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The snakepit name of a numpy dtype, or DtypeError if it cannot be shared."""
    metadata = dtype.metadata
    if metadata is not None and metadata.get("snakepit") == "bfloat16":
        return "bfloat16"
    if dtype.names is None and dtype.subdtype is None and dtype.isnative:
        name = dtype.name
        if name in (_BY_NAME or _by_name()) and name != "bfloat16":
            return name
        if str(dtype) == "bfloat16":  # ml_dtypes' bfloat16, when installed
            return "bfloat16"
    raise DtypeError(
        expected=", ".join(SUPPORTED_DTYPES),
        got=str(dtype),
        suggestion="cast the array with .astype() to one of the supported dtypes "
        "(native byte order)",
    )


def numpy_dtype(name: object) -> np.dtype[Any]:
    """The numpy dtype for a snakepit dtype name (a DtypeError if unknown)."""
    table = _BY_NAME or _by_name()  # no call once made: the decoding hot path
    if isinstance(name, str) and name in table:
        return table[name]
    raise DtypeError(expected=", ".join(SUPPORTED_DTYPES), got=repr(name))


def resolve_dtype(dtype: object) -> np.dtype[Any]:
    """Accept a snakepit name, a numpy dtype or anything numpy understands."""
    table = _BY_NAME or _by_name()
    if isinstance(dtype, str) and dtype in table:
        return table[dtype]
    import numpy as np

    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise DtypeError(expected=", ".join(SUPPORTED_DTYPES), got=repr(dtype)) from exc
    return table[dtype_name(resolved)]


def c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """The byte strides of a C-contiguous array of ``shape`` (a dimension of
    0 counts as 1, so every stride stays a real step)."""
    strides: list[int] = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))
