"""The codec's decoding half: a payload back into objects (see :mod:`.codec`).

A small pickle that names no descriptor and holds no persistent id (a
reply ``None``, plain arguments) is plain ``pickle.loads``; anything else
goes through an unpickler whose ``_shared`` opens the flat descriptors of
shared blocks, checked field by field, for the carrier its tag names.
"""

from __future__ import annotations

import io
import pickle
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import numpy as np

from snakepit._core import bytes_copy
from snakepit.errors import DeviceError, SerializationError
from snakepit.zero_copy._ref import array_from_fields

from . import _bulk, _cuda_carrier, _flat
from ._carriers import BY_TAG, DESCRIPTOR_MODULE, TAG_BYTEARRAY, TAG_BYTES
from ._plain import NO_ARGUMENTS_PAYLOAD, NONE_PAYLOAD
from ._view_reader import VIEW_READER_BYTES, ViewReader
from .protocol import could_be_ctrl_c

__all__ = ["Blob", "blob_size", "decode"]

Blob = tuple[Any, ...]
"""A payload as it travels in a frame: ``(pickle, buffers)``, its out-of-band
buffers each a ``pickle.PickleBuffer`` when sent and a ``memoryview`` into the
received frame when it arrives (see :mod:`snakepit._wire.protocol`); or
``(pickle, (), bulk)`` when they travel in one shared block (``bulk`` names
it, see :mod:`snakepit._wire._bulk`)."""


class _Opener:
    """Opens flat descriptors for one decoding (what ``_shared`` names in it).

    Apart from the unpickler: its memo holds what ``find_class`` returned,
    and a method of the unpickler there would be a cycle keeping every
    decoded object alive until the next GC.
    """

    __slots__ = ("borrowed", "failures", "keep")

    def __init__(self, keep: bool, borrowed: list[np.ndarray[Any, Any]] | None) -> None:
        self.keep = keep
        self.borrowed = borrowed
        self.failures: list[BaseException] = []

    def __call__(self, *fields: Any) -> Any:
        """A carrier's object over the block a flat descriptor names."""
        if len(fields) != 11:
            raise pickle.UnpicklingError(f"a descriptor has 11 fields, not {len(fields)}")
        tag, transferred, extra = fields[0], fields[1], fields[10]
        carrier = BY_TAG.get(tag) if type(tag) is str else None
        if carrier is None or type(transferred) is not bool:
            raise pickle.UnpicklingError(f"unknown descriptor {tag!r}, {transferred!r}")
        if transferred:
            return carrier.from_block(array_from_fields(fields[2:10], "adopt"), extra)
        if self.keep:
            return carrier.from_block(array_from_fields(fields[2:10], "acquire"), extra)
        array = array_from_fields(fields[2:10], "borrow")
        obj = carrier.from_block(array, extra)
        if self.borrowed is not None:
            # The object holds the array: a call that keeps the object keeps
            # the array referenced, and the worker retains the block for it.
            self.borrowed.append(array)
        return obj

    def cuda(self, *fields: Any) -> Any:
        """A CUDA tensor over a peer's memory (see :mod:`._cuda_carrier`)."""
        return _cuda_carrier.open_descriptor(fields, self.keep, self.borrowed, self.failures)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, *, opener: _Opener, buffers: Any) -> None:
        super().__init__(file, buffers=buffers or None)
        self.opener = opener

    def find_class(self, module: str, name: str) -> Any:
        if name == "_shared" and module == DESCRIPTOR_MODULE:
            return self.opener
        if name == "_shared" and module == _cuda_carrier.__name__:
            return self.opener.cuda
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 2:
            if pid[0] == TAG_BYTES:
                # A ``bytes`` the frame reader received on its own is the value.
                data = pid[1]
                return data if type(data) is bytes else bytes_copy(data)
            if pid[0] == TAG_BYTEARRAY:
                return bytearray(pid[1])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def decode(
    blob: Blob | bytes | bytearray | memoryview | float | int,
    *,
    keep: bool = False,
    borrowed: list[np.ndarray[Any, Any]] | None = None,
) -> Any:
    """Unpickle a payload produced by :func:`encode` (its ``blob``, or a bare
    pickle without out-of-band buffers; a ``float`` or ``int``, the value of
    a compact reply, is itself).

    ``keep=False``: lent arrays are borrowed (valid while the sender keeps
    them; call arguments in a worker) and appended to ``borrowed`` if given.
    ``keep=True``: every array holds a block reference of its own for as long
    as it lives (results in the supervisor).
    Raises SerializationError(direction="decode") on failure.
    """
    bulk = slots = form = None
    if type(blob) is tuple:
        if len(blob) == 2 and type(blob[1]) is tuple:
            payload, buffers = blob
            if payload == NONE_PAYLOAD:
                return None  # most replies
            if payload == NO_ARGUMENTS_PAYLOAD:
                return (), {}  # a call without arguments (a new dict: it is the callee's)
            if not buffers and type(payload) is bytes and _needs_no_opener(payload):
                try:  # the common reply and call: a small plain pickle
                    return pickle.loads(payload)
                except BaseException as exc:
                    _reraise(exc)
        elif len(blob) == 3 and blob[1] == ():
            payload, buffers, bulk = blob
        elif _flat.is_flat(blob):
            payload, buffers, form, slots = blob[0], (), blob[2], blob[3]
            if type(payload) is bytes:  # the common flat call: nothing more to look at
                try:
                    return _flat.decode(payload, form, slots, keep, borrowed)
                except BaseException as exc:
                    _reraise(exc)
        else:
            raise SerializationError("malformed payload", direction="decode")
    elif type(blob) is float or type(blob) is int:
        return blob  # a compact reply's number (``_compact``): decoded already
    else:
        payload, buffers = blob, ()
    if type(payload) is pickle.PickleBuffer:  # a blob made in this process
        payload = payload.raw()
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise SerializationError(f"malformed payload {type(payload).__name__}", direction="decode")
    try:
        if slots is not None:
            return _flat.decode(payload, form, slots, keep, borrowed)
        if type(payload) is bytes and bulk is None and _needs_no_opener(payload):
            return pickle.loads(payload, buffers=buffers or None)
        # io.BytesIO shares a bytes object but copies anything else; a large
        # frame's view is read in place instead.
        source: Any = (
            io.BytesIO(payload)
            if type(payload) is bytes or len(payload) < VIEW_READER_BYTES
            else ViewReader(payload)
        )
        if bulk is not None:
            buffers = _bulk.open_spans(bulk, keep, borrowed)
        opener = _Opener(keep, borrowed)
        value = _Unpickler(source, opener=opener, buffers=buffers).load()
        return _cuda_carrier.checked(value, opener.failures)
    except BaseException as exc:
        _reraise(exc)


def _reraise(exc: BaseException) -> NoReturn:
    """Raise what decoding raises for ``exc`` (see :func:`_undecodable`)."""
    error = _undecodable(exc)
    if error is exc:
        raise exc
    raise error from exc


def _undecodable(exc: BaseException) -> BaseException:
    """What decoding raises for ``exc``: a SerializationError, unless it is a
    DeviceError or a real Ctrl-C. A payload may unpickle into a raised
    SystemExit or KeyboardInterrupt (a __reduce__ that calls sys.exit): that
    is bad data, not a request to stop. Only a real Ctrl-C, which reaches the
    main thread, goes on."""
    if isinstance(exc, DeviceError) or (isinstance(exc, KeyboardInterrupt) and could_be_ctrl_c()):
        return exc
    return SerializationError(
        f"cannot deserialize: {type(exc).__name__}: {exc}", direction="decode"
    )


#: Pickles up to this size are looked at for descriptors and persistent ids
#: before decoding (larger ones always go through the codec's unpickler).
_PLAIN_DECODE_BYTES = 64 << 10
#: In every pickle that names a descriptor; the persistent id opcodes
#: (BINPERSID ``Q``, and PERSID ``P`` of protocol 0), as byte values: ``int in
#: bytes`` is a ``memchr``, while ``bytes in bytes`` first tries the needle as
#: an integer and raises and clears a TypeError inside CPython (3.11) every time.
_DESCRIPTOR_MARK, _BINPERSID, _PERSID = b"_shared", ord("Q"), ord("P")


def _needs_no_opener(payload: bytes) -> bool:
    """Whether plain ``pickle.loads`` decodes ``payload`` as the codec's
    unpickler would: a small pickle that names no descriptor (``_shared``)
    and holds no persistent id opcode (a reply ``None``, plain arguments).
    That skips building an unpickler and calling back into Python for each
    class it names. The test is on bytes: a pickle that merely holds such a
    byte in its data takes the full path, which decodes it the same. (A
    forged pickle that builds the name at run time meets the real
    ``_shared``, which refuses.)"""
    return (
        len(payload) <= _PLAIN_DECODE_BYTES
        and payload.find(_DESCRIPTOR_MARK) < 0
        and _BINPERSID not in payload
        and _PERSID not in payload
    )


def blob_size(blob: Any) -> int:
    """Bytes of a received payload (pickle and out-of-band buffers); 0 if malformed."""
    try:
        if type(blob) is tuple:
            return len(blob[0]) + sum(len(buffer) for buffer in blob[1])
        return len(blob)
    except TypeError:
        return 0
