"""The numpy carrier: arrays travel as TensorRefs of shared-memory blocks.

A carrier is a module with four names, used by the codec
(:mod:`snakepit._wire.codec`) for every object of one kind of data:

* ``tag``: names the kind in a payload;
* ``types()``: the exact types it carries now (empty while the library the
  kind belongs to is not imported: such a process has no such objects);
* ``to_block(obj, threshold)``: ``(array, extra)`` (the shared array
  holding the data and what the receiver needs besides, a str or None) or
  None to let pickle handle ``obj``; the codec describes the array;
* ``from_block(array, extra)``: the object rebuilt over the received array,
  without copying; it validates ``extra`` (which comes from another process).

numpy arrays are the built-in kind: arrays already in shared memory travel
as they are, others at or above the threshold are copied in once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snakepit.errors import DtypeError, InvalidDescriptorError

from ._arena import share_array
from ._mapping import sendable_buffer

tag = "snakepit.array"
_TYPES: frozenset[type] = frozenset({np.ndarray})


def types() -> frozenset[type]:
    """``{numpy.ndarray}``: subclasses are pickled as they define."""
    return _TYPES


def to_block(obj: np.ndarray[Any, Any], threshold: int) -> tuple[np.ndarray[Any, Any], None] | None:
    """The shared array for ``obj``: itself if already shared, else a copy
    (at or above ``threshold`` bytes)."""
    if obj.dtype.hasobject:
        return None
    if sendable_buffer(obj) is None:
        if obj.nbytes < threshold:
            return None
        try:
            obj = share_array(obj)
        except DtypeError:
            return None  # e.g. structured dtypes: plain pickling still works
    return obj, None


def from_block(array: np.ndarray[Any, Any], extra: object) -> np.ndarray[Any, Any]:
    """The received array itself."""
    if extra is not None:
        raise InvalidDescriptorError(f"unexpected extra {extra!r} in an array descriptor")
    return array
