"""Call arguments whose arrays are already shared, top level: no pickler hooks.

The common call with an array hands over an array that lives in shared
memory already (``snakepit.zeros``, ``share``, a result passed on), next to
a few scalars: ``pool.call(fn, array, 0.5, axis=1)``. Through the codec's
pickler that costs a pickler with a dispatch table, a call back into Python
for the array and, on the other side, an unpickler whose ``find_class``
opens the descriptor: more than the rest of a no-op call's encoding and
decoding together. Here the arguments are pickled by the plain C pickler
with ``None`` where each array was, and the arrays' descriptors travel
beside the pickle as flat tuples of strings and ints (the frame's own
pickling writes them at C speed)::

    (pickle of (args, kwargs) with None for each array, (), None,
     ((slot, region, region size, offset, nbytes, byte offset, dtype,
       shape, strides), ...))

``slot`` is the argument's position (an int) or its keyword (a str).
Anything else (an array nested in a list, one not in shared memory, a
tensor, an object of a class) goes the codec's general way.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from snakepit.errors import DtypeError
from snakepit.zero_copy._mapping import RefMode
from snakepit.zero_copy._ref import array_from_fields, fields_of

from ._plain import PROTOCOL, SCALARS

__all__ = ["decode", "encode", "is_flat"]

#: Descriptor fields after the slot (see :data:`snakepit.zero_copy._ref.Fields`).
_FIELDS = 8
#: Most arguments looked at: a long argument list goes the general way.
_MOST_ARGUMENTS = 16

Slots = tuple[tuple[Any, ...], ...]


def encode(obj: Any) -> tuple[bytes, list[Any], Slots] | None:
    """``(pickle, arrays to keep alive, descriptors)`` for call arguments
    ``(args, kwargs)`` made of scalars and shared numpy arrays (no
    descriptors: a plain pickle of scalars); None for anything else."""
    if type(obj) is not tuple or len(obj) != 2:
        return None
    args, kwargs = obj
    if type(args) is not tuple or type(kwargs) is not dict:
        return None
    if len(args) + len(kwargs) > _MOST_ARGUMENTS:
        return None
    slots: list[tuple[Any, ...]] = []
    arrays: list[Any] = []
    for slot, value in enumerate(args):
        if type(value) not in SCALARS and not _described(slot, value, slots, arrays):
            return None
    for slot, value in kwargs.items():
        if type(slot) is not str:
            return None
        if type(value) not in SCALARS and not _described(slot, value, slots, arrays):
            return None
    if not slots:
        return pickle.dumps(obj, protocol=PROTOCOL), arrays, ()  # scalars only: plain
    holes = list(args)
    named = dict(kwargs)
    for slot, *_ in slots:
        if type(slot) is int:
            holes[slot] = None
        else:
            named[slot] = None
    return pickle.dumps((tuple(holes), named), protocol=PROTOCOL), arrays, tuple(slots)


def _described(
    slot: int | str, value: Any, slots: list[tuple[Any, ...]], arrays: list[Any]
) -> bool:
    if type(value) is not np.ndarray:
        return False
    try:
        fields = fields_of(value)
    except DtypeError:
        return False  # a dtype that cannot be named: pickled
    if fields is None:
        return False
    slots.append((slot, *fields))
    arrays.append(value)
    return True


def is_flat(blob: tuple[Any, ...]) -> bool:
    """Whether a received blob has the form :func:`encode` gives."""
    return len(blob) == 4 and blob[1] == () and blob[2] is None


def decode(payload: Any, slots: Any, keep: bool, borrowed: list[Any] | None) -> Any:
    """The ``(args, kwargs)`` of a flat blob, each array over its shared block.

    Everything from the other process is checked: the pickle must give a
    tuple and a dict, each descriptor must name a hole (a ``None``) in them
    and its fields must describe a valid block (as any descriptor's).
    """
    value = pickle.loads(payload)
    if (
        type(value) is not tuple
        or len(value) != 2
        or type(value[0]) is not tuple
        or type(value[1]) is not dict
    ):
        raise pickle.UnpicklingError("flat arguments are not (args, kwargs)")
    if type(slots) is not tuple or not slots:
        raise pickle.UnpicklingError("flat arguments without descriptors")
    args, kwargs = list(value[0]), value[1]
    mode: RefMode = "acquire" if keep else "borrow"
    for descriptor in slots:
        if type(descriptor) is not tuple or len(descriptor) != 1 + _FIELDS:
            raise pickle.UnpicklingError(f"malformed flat descriptor {descriptor!r:.200}")
        slot = descriptor[0]
        if type(slot) is int and 0 <= slot < len(args) and args[slot] is None:
            target: Any = args
        elif type(slot) is str and slot in kwargs and kwargs[slot] is None:
            target = kwargs
        else:
            raise pickle.UnpicklingError(f"flat descriptor for no hole: {slot!r:.100}")
        array = array_from_fields(descriptor[1:], mode)
        target[slot] = array
        if not keep and borrowed is not None:
            # The call that keeps it keeps it referenced (see codec.decode).
            borrowed.append(array)
    return tuple(args), kwargs
