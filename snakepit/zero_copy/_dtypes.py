"""The dtypes a TensorRef may carry, and their numpy representation."""

from __future__ import annotations

from typing import Any

import numpy as np

from snakepit._util import DTYPE_NAMES
from snakepit.errors import DtypeError

#: numpy has no bfloat16; it travels as a raw 2-byte type tagged in the dtype's
#: metadata, so the tag survives views, slicing and pickling.
BFLOAT16 = np.dtype("V2", metadata={"snakepit": "bfloat16"})

_BY_NAME: dict[str, np.dtype[Any]] = {
    name: BFLOAT16 if name == "bfloat16" else np.dtype(name) for name in DTYPE_NAMES
}

#: Every dtype name a TensorRef may carry (docs/zero-copy.md).
SUPPORTED_DTYPES: tuple[str, ...] = tuple(_BY_NAME)


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The snakepit name of a numpy dtype, or DtypeError if it cannot be shared."""
    metadata = dtype.metadata
    if metadata is not None and metadata.get("snakepit") == "bfloat16":
        return "bfloat16"
    if dtype.names is None and dtype.subdtype is None and dtype.isnative:
        name = dtype.name
        if name in _BY_NAME and name != "bfloat16":
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
    if isinstance(name, str) and name in _BY_NAME:
        return _BY_NAME[name]
    raise DtypeError(expected=", ".join(SUPPORTED_DTYPES), got=repr(name))


def resolve_dtype(dtype: object) -> np.dtype[Any]:
    """Accept a snakepit name, a numpy dtype or anything numpy understands."""
    if isinstance(dtype, str) and dtype in _BY_NAME:
        return _BY_NAME[dtype]
    try:
        resolved = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as exc:
        raise DtypeError(expected=", ".join(SUPPORTED_DTYPES), got=repr(dtype)) from exc
    return _BY_NAME[dtype_name(resolved)]
