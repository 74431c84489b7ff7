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

from typing import TYPE_CHECKING, Any

from snakepit._util import loaded_ndarray
from snakepit.errors import DtypeError, InvalidDescriptorError

from ._arena import share_array
from ._mapping import sendable_buffer

if TYPE_CHECKING:
    import numpy as np

tag = "snakepit.array"
_TYPES: list[frozenset[type]] = []  # {numpy.ndarray}, once numpy is imported
_NO_TYPES: frozenset[type] = frozenset()


def types() -> frozenset[type]:
    """``{numpy.ndarray}`` (subclasses are pickled as they define), or none
    while numpy is not imported."""
    if _TYPES:
        return _TYPES[0]
    ndarray = loaded_ndarray()
    if ndarray is None:
        return _NO_TYPES
    _TYPES.append(frozenset({ndarray}))
    return _TYPES[0]


#: ``extra`` of an array the receiver must get read-only (see :func:`keep_readonly`).
READONLY = "readonly"
_KEEP_READONLY = [False]


def keep_readonly(on: bool) -> None:
    """In this process, copy read-only arrays into shared memory whatever their
    size and mark them read-only for the receiver.

    Off by default (a local pool's arguments are copies the worker may
    change). A Ray backend's host turns it on: the arrays it fetched from
    Ray's object store are read-only, and a worker's write to one must fail
    rather than be lost (nothing reaches the caller on another node).
    """
    _KEEP_READONLY[0] = on


def to_block(
    obj: np.ndarray[Any, Any], threshold: int
) -> tuple[np.ndarray[Any, Any], str | None] | None:
    """The shared array for ``obj``: itself if already shared, else a copy
    (at or above ``threshold`` bytes; any size for a read-only array under
    :func:`keep_readonly`)."""
    if obj.dtype.hasobject:
        return None
    readonly = _KEEP_READONLY[0] and not obj.flags.writeable
    if sendable_buffer(obj) is None:
        if obj.nbytes < threshold and not readonly:
            return None
        try:
            obj = share_array(obj)
        except DtypeError:
            return None  # e.g. structured dtypes: plain pickling still works
    return obj, READONLY if readonly else None


def from_block(array: np.ndarray[Any, Any], extra: object) -> np.ndarray[Any, Any]:
    """The received array itself (read-only when the sender said so)."""
    if extra is None:
        return array
    if extra == READONLY:
        array.flags.writeable = False
        return array
    raise InvalidDescriptorError(f"unexpected extra {extra!r} in an array descriptor")
