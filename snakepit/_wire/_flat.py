"""Call arguments of scalars and plain arrays, top level: no pickler hooks.

The common call with an array hands over an array that lives in shared
memory already (``snakepit.zeros``, ``share``, a result passed on), or a
small fresh one (a feature vector), next to a few scalars:
``pool.call(fn, array, 0.5, axis=1)``. Through the codec's pickler that
costs a pickler with a dispatch table, a call back into Python for the
array and, on the other side, an unpickler whose ``find_class`` opens the
descriptor or numpy's reconstructor: more than the rest of a no-op call's
encoding and decoding together. Here the arguments are pickled by the plain
C pickler with ``None`` where each array was, and each array travels beside
the pickle as a flat tuple::

    (pickle of (args, kwargs) with None for each array, (), None,
     ((slot, packed fields), ...          # an array in shared memory
      (slot, dtype, shape, data), ...))   # a small C-contiguous one

An array in shared memory is described by its block's fields packed into
bytes (:mod:`snakepit.zero_copy._packed`): the sender packs an array it
sends again only once, the receiver checks a descriptor it received before
only once.

``slot`` is the argument's position (an int) or its keyword (a str). A
small array is one the general way pickles inline too (below
``OUT_OF_BAND_BYTES``); its data is copied now, into a ``bytearray`` when
the array is writable (it arrives writable, as through pickle) or ``bytes``
when it is read-only. A fresh call argument that the general way would copy
into shared memory (from the threshold up) is copied there now, the same
way (``zero_copy._numpy.to_block``), and described as a shared array: the
copy is kept alive with the call. Anything else (an array nested in a list,
a fresh one between the two sizes, a non-contiguous small one, a tensor, an
object of a class) goes the codec's general way.
"""

from __future__ import annotations

import pickle
import sys
from itertools import chain
from typing import Any

from snakepit import _core
from snakepit.errors import DtypeError, SnakepitError
from snakepit.zero_copy import _numpy
from snakepit.zero_copy._arena import threshold_bytes
from snakepit.zero_copy._mapping import RefMode, sendable_buffer
from snakepit.zero_copy._packed import array_from_packed, pack, packed_of
from snakepit.zero_copy._ref import (
    array_from_inline,
    fields_of,
    inline_fields_of,
    take_transfer_ref,
)

from ._bulk import OUT_OF_BAND_BYTES
from ._plain import PROTOCOL, SCALARS

__all__ = ["decode", "encode", "encode_result", "inline_bytes", "is_flat"]

#: Descriptor fields after the slot: an array in shared memory (its packed
#: fields; a result's also whether it carries a reference to adopt), a
#: small one with its data.
_FIELDS = 1
_RESULT_FIELDS = 2
_INLINE_FIELDS = 3
#: What a result's flat pickle of ``(args, kwargs)`` stands for (call
#: arguments have None there): ``args[0]``, ``args`` or ``kwargs``.
VALUE, TUPLE, DICT = "value", "tuple", "dict"
_FORMS = (None, VALUE, TUPLE, DICT)
#: Most arguments looked at: a long argument list goes the general way.
_MOST_ARGUMENTS = 16

Slots = tuple[tuple[Any, ...], ...]
#: A result's flat encoding (see :func:`encode_result`).
_Result = tuple[bytes, str, Slots, list[Any], list[Any]]
#: The pickle of ``((None,) * count, {})``: the arguments of ``count``
#: arrays passed by position, with a hole for each.
_ALL_HOLES = [
    pickle.dumps(((None,) * count, {}), protocol=PROTOCOL) for count in range(_MOST_ARGUMENTS + 1)
]
_HOLE_COUNTS = {payload: count for count, payload in enumerate(_ALL_HOLES)}
#: The keys of keyword arguments.
_STR = frozenset({str})


def encode(obj: Any) -> tuple[bytes, list[Any], Slots] | None:
    """``(pickle, arrays to keep alive, descriptors)`` for call arguments
    ``(args, kwargs)`` made of scalars, shared numpy arrays and small
    C-contiguous ones (no descriptors: a plain pickle of scalars); None for
    anything else."""
    if type(obj) is not tuple or len(obj) != 2:
        return None
    args, kwargs = obj
    if type(args) is not tuple or type(kwargs) is not dict:
        return None
    if SCALARS.issuperset(map(type, args)) and (
        not kwargs
        or (_STR.issuperset(map(type, kwargs)) and SCALARS.issuperset(map(type, kwargs.values())))
    ):
        # Most calls: scalars alone, seen at C speed, are one plain pickle.
        return pickle.dumps(obj, protocol=PROTOCOL), [], ()
    return _parts(args, kwargs)


def encode_result(value: Any, receiver: int) -> _Result | None:
    """``(pickle, form, descriptors, arrays to keep alive, transfer
    references)`` for a result for process ``receiver`` that is an array,
    or a tuple or str-keyed dict of scalars and arrays, with at least one
    array; None for anything else (then the general way).

    A small array travels with its data. A shared one (a block of this
    process's, or of the receiver's that the call returns) or a large fresh
    one (moved or copied into shared memory, as the general way would) is
    described by its packed fields, with a block reference for the receiver
    to adopt unless the receiver owns the block (``transferred``)::

        (slot, packed fields, transferred)
    """
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None  # numpy not imported: no array to send
    ndarray = numpy.ndarray
    kind = type(value)
    items: tuple[tuple[Any, Any], ...]
    if kind is ndarray:
        form, items = VALUE, ((0, value),)
    elif kind is tuple:
        if len(value) > _MOST_ARGUMENTS or ndarray not in set(map(type, value)):
            return None  # at C speed: most tuples hold no array
        form, items = TUPLE, tuple(enumerate(value))
    elif kind is dict:
        if (
            len(value) > _MOST_ARGUMENTS
            or ndarray not in set(map(type, value.values()))
            or not _STR.issuperset(map(type, value))
        ):
            return None
        form, items = DICT, tuple(value.items())
    else:
        return None
    slots: list[tuple[Any, ...]] = []
    shared: list[tuple[int, Any, Any]] = []  # (index in slots, shared array, its fields)
    seen: list[Any] = []
    try:
        for slot, item in items:
            item_kind = type(item)
            if item_kind in SCALARS:
                continue
            if item_kind is not ndarray or any(item is other for other in seen):
                return None  # an object, or one array twice (pickle keeps it one)
            seen.append(item)
            if sendable_buffer(item) is None:
                inline = inline_fields_of(item, OUT_OF_BAND_BYTES)
                if inline is not None:
                    slots.append((slot, *inline))  # a copy: nothing to keep alive
                    continue
                found = _numpy.to_block(item, threshold_bytes())  # moved or copied
                if found is None or found[1] is not None:
                    return None  # between the two sizes, or read-only: the general way
                item = found[0]
            fields = fields_of(item)
            if fields is None:
                return None  # its region lost its name meanwhile: the general way
            shared.append((len(slots), item, fields))
            slots.append((slot,))  # its packed fields below
    except (SnakepitError, DtypeError):
        return None  # no room, a dtype that cannot be named: the general way says why
    # Every part is known to go this way: only now are references taken.
    keepalive: list[Any] = []
    transfers: list[Any] = []
    for index, array, fields in shared:
        transferred = _core.name_owner(fields[0]) != receiver
        if transferred:
            transfers.append(take_transfer_ref(array))
        keepalive.append(array)
        slots[index] = (slots[index][0], pack(fields), transferred)
    if form == VALUE:
        payload = _ALL_HOLES[1]
    elif form == TUPLE and len(slots) == len(value):
        payload = _ALL_HOLES[len(value)]  # arrays alone: always the same pickle
    elif form == TUPLE:
        holes = list(value)
        for descriptor in slots:
            holes[descriptor[0]] = None
        payload = pickle.dumps((tuple(holes), {}), protocol=PROTOCOL)
    else:
        keywords = dict(value)
        for descriptor in slots:
            keywords[descriptor[0]] = None
        payload = pickle.dumps(((), keywords), protocol=PROTOCOL)
    return payload, form, tuple(slots), keepalive, transfers


def _parts(args: tuple[Any, ...], kwargs: dict[Any, Any]) -> tuple[bytes, list[Any], Slots] | None:
    if len(args) + len(kwargs) > _MOST_ARGUMENTS:
        return None
    if kwargs and not _STR.issuperset(map(type, kwargs)):
        return None
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None  # not imported: no array among them
    ndarray = numpy.ndarray
    if len(args) == 1 and not kwargs and type(args[0]) is ndarray:
        # The commonest flat call of all, ``fn(x)``: no loop.
        try:
            packed = packed_of(args[0])
        except DtypeError:
            return None
        if packed is not None:
            return _ALL_HOLES[1], [args[0]], ((0, packed),)
        inline = inline_fields_of(args[0], OUT_OF_BAND_BYTES)  # a small fresh one
        if inline is not None:
            return _ALL_HOLES[1], [], ((0, *inline),)
        copy = _shared_copy(args[0])  # a large fresh one
        return None if copy is None else (_ALL_HOLES[1], [copy[0]], ((0, copy[1]),))
    slots: list[tuple[Any, ...]] = []
    # Shared arrays (to keep alive), copied ones (each once: pickle would
    # give one array for ``fn(x, out=x)``, two copies would not).
    arrays: list[Any] = []
    copied: list[Any] = []
    # Large fresh ones, by their place in ``slots``: copied into shared
    # memory only once every argument is known to go this way (else the
    # general way would copy them a second time).
    large: list[tuple[int, Any]] = []
    named = False
    # One loop over positions and keywords, written for the common call:
    # a shared array or two among scalars.
    for slot, value in chain(enumerate(args), kwargs.items()) if kwargs else enumerate(args):
        kind = type(value)
        if kind in SCALARS:
            continue
        if kind is not ndarray:
            return None
        try:
            packed = packed_of(value)
        except DtypeError:
            return None  # a dtype that cannot be named: pickled
        if packed is not None:
            slots.append((slot, packed))
            arrays.append(value)
        else:
            if copied and any(value is seen for seen in copied):
                return None
            inline = inline_fields_of(value, OUT_OF_BAND_BYTES)
            if inline is not None:
                slots.append((slot, *inline))  # a copy: nothing to keep alive
            else:
                large.append((len(slots), value))
                slots.append((slot,))  # its packed fields once copied
            copied.append(value)
        named = named or type(slot) is str
    for index, value in large:
        copy = _shared_copy(value)
        if copy is None:
            return None
        slots[index] = (slots[index][0], copy[1])
        arrays.append(copy[0])  # the shared copy lives as long as the call
    if not slots:
        return pickle.dumps((args, kwargs), protocol=PROTOCOL), arrays, ()  # scalars: plain
    if not kwargs and len(slots) == len(args):
        # Arrays alone, the most common flat call (``fn(x)``, ``fn(x, y)``):
        # the pickle of their holes is always the same.
        return _ALL_HOLES[len(args)], arrays, tuple(slots)
    holes = list(args)
    keywords = dict(kwargs) if named else kwargs
    for descriptor in slots:
        slot = descriptor[0]
        if type(slot) is int:
            holes[slot] = None
        else:
            keywords[slot] = None
    return pickle.dumps((tuple(holes), keywords), protocol=PROTOCOL), arrays, tuple(slots)


def _shared_copy(array: Any) -> tuple[Any, bytes] | None:
    """A fresh call argument's copy in shared memory and its packed fields,
    where the general way would make that copy (at or above the threshold,
    a dtype that can be shared); None where it would not, or where the copy
    would arrive read-only (then the general way says so)."""
    try:
        found = _numpy.to_block(array, threshold_bytes())
    except SnakepitError:
        return None  # no room, or no shared memory: the general way says why
    if found is None or found[1] is not None:
        return None
    fields = fields_of(found[0])
    return None if fields is None else (found[0], pack(fields))


def inline_bytes(slots: Slots) -> int:
    """Bytes of array data that travel in ``slots`` (small arrays' copies)."""
    return sum(len(slot[-1]) for slot in slots if len(slot) == 1 + _INLINE_FIELDS)


def is_flat(blob: tuple[Any, ...]) -> bool:
    """Whether a received blob has the form :func:`encode` or
    :func:`encode_result` gives."""
    return len(blob) == 4 and blob[1] == () and blob[2] in _FORMS


def decode(payload: Any, form: Any, slots: Any, keep: bool, borrowed: list[Any] | None) -> Any:
    """The ``(args, kwargs)`` of a flat blob, each array over its shared
    block or over its own data.

    Everything from the other process is checked: the pickle must give a
    tuple and a dict, each descriptor must name a hole (a ``None``) in them
    and its fields must describe a valid block (as any descriptor's) or
    hold as many bytes as the dtype and shape need. A result (``form``
    not None) holds the parts its form stands for, its shared arrays each
    with whether it carries a reference to adopt.
    """
    holes = _HOLE_COUNTS.get(payload) if type(payload) is bytes else None
    if holes is not None:  # arrays alone: nothing to unpickle
        args, kwargs = [None] * holes, {}
    else:
        value = pickle.loads(payload)
        if (
            type(value) is not tuple
            or len(value) != 2
            or type(value[0]) is not tuple
            or type(value[1]) is not dict
        ):
            raise pickle.UnpicklingError("flat arguments are not (args, kwargs)")
        args, kwargs = list(value[0]), value[1]
    if type(slots) is not tuple or not slots:
        raise pickle.UnpicklingError("flat arguments without descriptors")
    mode: RefMode = "acquire" if keep else "borrow"
    for descriptor in slots:
        if type(descriptor) is not tuple or len(descriptor) not in (
            1 + _FIELDS,
            1 + _RESULT_FIELDS,
            1 + _INLINE_FIELDS,
        ):
            raise pickle.UnpicklingError(f"malformed flat descriptor {descriptor!r:.200}")
        slot = descriptor[0]
        if type(slot) is int and 0 <= slot < len(args) and args[slot] is None:
            target: Any = args
        elif type(slot) is str and slot in kwargs and kwargs[slot] is None:
            target = kwargs
        else:
            raise pickle.UnpicklingError(f"flat descriptor for no hole: {slot!r:.100}")
        if len(descriptor) == 1 + _INLINE_FIELDS:
            target[slot] = array_from_inline(descriptor[1:])  # its own data
            continue
        if len(descriptor) == 1 + _RESULT_FIELDS:
            transferred = descriptor[2]
            if form is None or type(transferred) is not bool:
                raise pickle.UnpicklingError(f"malformed flat descriptor {descriptor!r:.200}")
            # A result's block: with the reference the sender took for us,
            # or (ours, returned) one of our own.
            target[slot] = array_from_packed(descriptor[1], "adopt" if transferred else mode)
            continue
        if form is not None:
            raise pickle.UnpicklingError("a flat result's shared array without its reference")
        array = array_from_packed(descriptor[1], mode)
        target[slot] = array
        if not keep and borrowed is not None:
            # The call that keeps it keeps it referenced (see codec.decode).
            borrowed.append(array)
    if form is None:
        return tuple(args), kwargs
    if form == VALUE and len(args) == 1 and not kwargs:
        return args[0]
    if form == TUPLE and not kwargs:
        return tuple(args)
    if form == DICT and not args:
        return kwargs
    raise pickle.UnpicklingError(f"a flat result that is not a {form}")
