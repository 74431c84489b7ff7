"""A shared array's :data:`~snakepit.zero_copy._ref.Fields` packed into bytes.

The codec's flat arguments (``_wire/_flat.py``) describe each shared array
this way. The common call hands over the same shared input every time, so
both ends keep what they worked out: the sender the packed bytes per array
(looked at again only for what can change in place: shape, strides and
dtype), the receiver the checked fields per packed bytes. Bytes compare
exactly (no ``1.0 == 1 == True`` to tell apart), so a descriptor seen before
needs no check at all, and one never seen is checked as any descriptor is.

Layout, little-endian: u64 region size, block offset, block length and the
view's byte offset; u8 number of dimensions, u8 length of the dtype name,
u16 length of the region name; the region name (UTF-8), the dtype name
(ASCII); then the shape and the strides, an i64 each.
"""

from __future__ import annotations

import struct
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit import _core
from snakepit.errors import InvalidDescriptorError

from . import _mapping
from ._dtypes import c_strides, numpy_dtype
from ._mapping import RefMode
from ._ref import Fields, checked_fields, fields_of, view_of_fields

_HEAD = struct.Struct("<QQQQBBH")
#: Most dimensions a packed descriptor has (numpy's own limit).
_MOST_DIMENSIONS = 64
_DIMS = [struct.Struct(f"<{2 * ndim}q") for ndim in range(_MOST_DIMENSIONS + 1)]
#: Entries kept at each end before the cache starts again.
_MOST_CACHED = 4096

# id(array) -> (weak reference to it, shape, strides, dtype, packed fields).
_sent: dict[int, tuple[weakref.ref[Any], tuple[int, ...], tuple[int, ...], Any, bytes]] = {}
# packed fields -> the fields they hold, checked.
_received: dict[bytes, Fields] = {}
# packed fields of a plain view (the whole block from its start, C order)
# -> region name and size, block offset and length, shape, numpy dtype: what
# a borrowed view needs, without the general path's steps.
_plain: dict[bytes, tuple[str, int, int, int, tuple[int, ...], Any]] = {}


def pack(fields: Fields) -> bytes:
    """``fields`` (made by this process: valid) as bytes."""
    region, region_size, offset, nbytes, byte_offset, dtype, shape, strides = fields
    name, kind = region.encode(), dtype.encode()
    head = _HEAD.pack(region_size, offset, nbytes, byte_offset, len(shape), len(kind), len(name))
    return head + name + kind + _DIMS[len(shape)].pack(*shape, *strides)


def packed_of(array: np.ndarray[Any, Any]) -> bytes | None:
    """The packed fields of a shared array, None if it is not in shared
    memory another process can open; DtypeError for a dtype that cannot be
    shared (as :func:`~snakepit.zero_copy._ref.fields_of`)."""
    entry = _sent.get(id(array))
    if (
        entry is not None
        and entry[0]() is array
        and entry[1] == array.shape
        and entry[2] == array.strides
        and entry[3] is array.dtype
    ):
        packed = entry[4]
        unlinked = _mapping.state.unlinked
        # Its region may have lost its name since (its owner died).
        if not unlinked or _mapping.sendable_buffer(array) is not None:
            return packed
        return None
    fields = fields_of(array)
    if fields is None:
        return None
    packed = pack(fields)
    if len(_sent) >= _MOST_CACHED:
        _sent.clear()
    _sent[id(array)] = (weakref.ref(array), fields[6], fields[7], array.dtype, packed)
    return packed


def unpack(data: object) -> Fields:
    """The checked fields packed in ``data`` from another process;
    InvalidDescriptorError when they are malformed."""
    fields = _received.get(data) if type(data) is bytes else None
    if fields is not None:
        return fields
    if type(data) is not bytes:
        raise InvalidDescriptorError(f"a packed descriptor is bytes, not {type(data).__name__}")
    if len(data) < _HEAD.size:
        raise InvalidDescriptorError(f"a packed descriptor of {len(data)} bytes is truncated")
    region_size, offset, nbytes, byte_offset, ndim, kind_length, name_length = _HEAD.unpack_from(
        data
    )
    start = _HEAD.size + name_length + kind_length
    if ndim > _MOST_DIMENSIONS or len(data) != start + _DIMS[min(ndim, _MOST_DIMENSIONS)].size:
        raise InvalidDescriptorError(
            f"a packed descriptor of {len(data)} bytes disagrees with its lengths"
        )
    try:
        region = data[_HEAD.size : _HEAD.size + name_length].decode()
        dtype = data[_HEAD.size + name_length : start].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidDescriptorError("a packed descriptor's names are not text") from None
    dims = _DIMS[ndim].unpack_from(data, start)
    fields = checked_fields(
        (region, region_size, offset, nbytes, byte_offset, dtype, dims[:ndim], dims[ndim:])
    )
    if len(_received) >= _MOST_CACHED:
        _received.clear()
        _plain.clear()
    _received[data] = fields
    region, region_size, offset, nbytes, byte_offset, dtype, shape, strides = fields
    resolved = numpy_dtype(dtype)
    if not byte_offset and shape and strides == c_strides(shape, resolved.itemsize):
        _plain[data] = (region, region_size, offset, nbytes, shape, resolved)
    return fields


def array_from_packed(data: object, mode: RefMode) -> np.ndarray[Any, Any]:
    """The array that packed fields from another process describe (checked
    first), as :func:`~snakepit.zero_copy._ref.array_from_fields`."""
    plain = _plain.get(data) if type(data) is bytes and mode == "borrow" else None
    if plain is not None:
        # The common argument: a plain view of a block of a region mapped
        # already, checked when it first came.
        region = _mapping.state.regions.get(plain[0])
        if region is not None and region.mapped and region.size == plain[1]:
            try:
                array: np.ndarray[Any, Any] = _core.array_over(
                    region.buffer(plain[2], plain[3], False, None), plain[4], plain[5]
                )
            except _core.CoreError:
                pass  # the general path says why
            else:
                return array
    return view_of_fields(unpack(data), mode)
