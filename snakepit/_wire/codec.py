"""The one codec for call arguments and results (pickle protocol 5).

Objects of the kinds the carriers know travel as descriptors of
shared-memory blocks (no copy): numpy arrays, torch CPU tensors, Arrow
tables (and some pandas frames). Those already in shared memory travel as
they are; others at or above the threshold are copied once into the
sender's arena; smaller objects are pickled inline. Each carrier is a module
of :mod:`snakepit.zero_copy` (see ``zero_copy/_numpy.py`` for the protocol),
listed once in :data:`CARRIERS`; torch and pyarrow are only consulted when the
process has already imported them. Functions and lambdas that pickle cannot
send by reference go through cloudpickle.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from types import FunctionType, ModuleType
from typing import Any

import cloudpickle
import numpy as np

from snakepit._core import bytes_copy
from snakepit.errors import SerializationError, SharedMemoryError
from snakepit.zero_copy import (
    _arrow,  # pyarrow itself is imported on first use only
    _numpy,
    _torch,  # likewise torch: never imported here
)
from snakepit.zero_copy._ref import TensorRef
from snakepit.zero_copy._runtime import (
    array_from_ref,
    drop_transfer_ref,
    take_transfer_ref,
    threshold_bytes,
)

from ._pickling import two_pass
from .protocol import could_be_ctrl_c

PROTOCOL = 5
_TAG_BYTES = "snakepit.bytes"

#: Every kind of data that travels through shared memory: the one registry.
#: A new kind is one carrier module, added here.
CARRIERS: tuple[ModuleType, ...] = (_numpy, _torch, _arrow)
_BY_TAG: dict[str, ModuleType] = {carrier.tag: carrier for carrier in CARRIERS}


#: Blobs and buffers at least this large travel beside the pickle, as raw
#: bytes of the frame, instead of being copied into it.
OUT_OF_BAND_BYTES = 1 << 16

Blob = tuple[Any, tuple[Any, ...]]
"""A payload as it travels in a frame: the pickle, then its out-of-band
buffers, each a ``pickle.PickleBuffer`` when sent and a ``memoryview`` into the
received frame when it arrives (see :mod:`snakepit._wire.protocol`)."""


@dataclass
class Encoded:
    """A payload plus what must stay alive until the receiver is done with it.

    ``buffers`` are the out-of-band parts of the pickle (large ``bytes`` and
    array data), read when the frame is sent.
    """

    payload: bytes
    keepalive: list[Any] = field(default_factory=list)
    transfers: list[TensorRef] = field(default_factory=list)
    buffers: list[pickle.PickleBuffer] = field(default_factory=list)

    @property
    def blob(self) -> Blob:
        """This payload in the form a frame carries (large parts out of band)."""
        payload: Any = self.payload
        if len(payload) >= OUT_OF_BAND_BYTES:
            payload = pickle.PickleBuffer(payload)
        return payload, tuple(self.buffers)

    @property
    def size(self) -> int:
        """Bytes on the wire: the pickle and its out-of-band buffers."""
        return len(self.payload) + sum(buffer.raw().nbytes for buffer in self.buffers)


class _NeedsCloudpickleError(Exception):
    """Raised by the fast pickler for objects only cloudpickle sends correctly."""


# Carrier tables by the carriers' type sets (which change only when a
# library such as torch or pyarrow gets imported).
_tables: dict[tuple[frozenset[type], ...], dict[type, ModuleType]] = {}


def _carrier_table() -> dict[type, ModuleType]:
    """Exact type -> carrier, for the kinds this process can hold now."""
    key = tuple([carrier.types() for carrier in CARRIERS])
    table = _tables.get(key)
    if table is None:
        table = {
            kind: carrier for carrier, kinds in zip(CARRIERS, key, strict=True) for kind in kinds
        }
        _tables[key] = table
    return table


class _ArrayIds:
    """Persistent ids that turn the carriers' kinds into shared-memory descriptors."""

    by_value_check = False
    receiver: int | None
    threshold: int
    buffers: list[pickle.PickleBuffer]
    keepalive: list[Any]
    transfers: list[TensorRef]
    carriers: dict[type, ModuleType]

    def __init__(
        self, file: io.BytesIO, *, receiver: int | None, threshold: int, snapshot: bool
    ) -> None:
        sink = _OutOfBand(snapshot)
        # Not a bound method: pickler -> callback -> pickler would be a cycle,
        # keeping the sent arrays (and their blocks) alive until the next GC.
        super().__init__(file, protocol=PROTOCOL, buffer_callback=sink)  # type: ignore[call-arg]
        self._setup(receiver, threshold, sink.buffers)

    def _setup(
        self, receiver: int | None, threshold: int, buffers: list[pickle.PickleBuffer]
    ) -> None:
        self.receiver = receiver
        self.threshold = threshold
        self.keepalive = []
        self.transfers = []
        self.buffers = buffers
        self.carriers = _carrier_table()

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is bytes:
            if len(obj) < OUT_OF_BAND_BYTES:
                return None
            # The buffer in the id goes out of band, in pickle's own order.
            return (_TAG_BYTES, pickle.PickleBuffer(obj))
        # `in`, not .get(): most objects are no carrier's, and an operator
        # costs less than a method call (this runs for every object pickled).
        if kind not in self.carriers:
            # Plain pickle would send these by reference, and a worker's
            # __main__ is not the caller's: only cloudpickle sends them by value.
            if (
                self.by_value_check
                and (kind is FunctionType or kind is type)
                and obj.__module__ == "__main__"
            ):
                raise _NeedsCloudpickleError
            return None
        carrier = self.carriers[kind]
        found = carrier.to_block(obj, self.threshold)
        if found is None:
            return None
        array, ref, extra = found
        # The sender keeps every shared array alive until the receiver is done.
        self.keepalive.append(array)
        transferred = not (self.receiver is None or _owner(ref) == self.receiver)
        if transferred:
            ref = take_transfer_ref(array)
            self.transfers.append(ref)
        # else borrowed: the receiver owns the block or the sender outlives its use.
        # (tag, ref, transferred[, extra]): no extra for plain arrays, which
        # keeps their ids one object (one persistent_id call) shorter.
        if extra is None:
            return (carrier.tag, ref, transferred)
        return (carrier.tag, ref, transferred, extra)


class _OutOfBand:
    """Pickle's ``buffer_callback`` for protocol-5 buffers (array data): says
    which travel beside the pickle (returns False) and collects them.

    Small ones are copied in. Large ones travel beside the pickle: as they
    are when the frame goes out at once (a worker's result), as a copy taken
    now when the payload must be a snapshot (call arguments: the caller may
    change an array after ``submit``). Either way the receiver's arrays are
    views of the frame, not copies of it.
    """

    __slots__ = ("buffers", "snapshot")

    def __init__(self, snapshot: bool) -> None:
        self.snapshot = snapshot
        self.buffers: list[pickle.PickleBuffer] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True
        self.buffers.append(_copy_of(buffer) if self.snapshot else buffer)
        return False


def _copy_of(buffer: pickle.PickleBuffer) -> pickle.PickleBuffer:
    """A buffer the caller can no longer change (``bytes`` cannot change at all)."""
    raw = buffer.raw()
    if type(raw.obj) is bytes:
        return buffer
    return pickle.PickleBuffer(bytearray(raw))  # stays writable


def snapshot(blob: Blob) -> Blob:
    """``blob`` with its out-of-band array data copied, for a payload encoded
    with ``snapshot=False`` that will not be sent at once after all (a queued
    call: the caller may change its arrays after ``submit`` returns)."""
    payload, buffers = blob
    return payload, tuple(_copy_of(buffer) for buffer in buffers)


class _FastPickler(_ArrayIds, pickle.Pickler):
    """The C pickler: most messages need nothing more."""

    by_value_check = True


class _CloudPickler(_ArrayIds, cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle: functions from ``__main__``, lambdas and closures by value."""


def _owner(ref: TensorRef) -> int:
    return int(ref.region.split("-", 2)[1])


class _Unpickler(pickle.Unpickler):
    def __init__(
        self,
        file: Any,
        *,
        keep: bool,
        borrowed: list[np.ndarray[Any, Any]] | None,
        buffers: tuple[Any, ...],
    ) -> None:
        super().__init__(file, buffers=buffers or None)
        self.keep = keep
        self.borrowed = borrowed

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not tuple or not 3 <= len(pid) <= 4 or pid[0] not in _BY_TAG:
            if type(pid) is tuple and len(pid) == 2 and pid[0] == _TAG_BYTES:
                return bytes_copy(pid[1])
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        carrier = _BY_TAG[pid[0]]
        ref, transferred = pid[1], pid[2]
        extra = pid[3] if len(pid) == 4 else None
        if type(ref) is not TensorRef:
            raise pickle.UnpicklingError(f"expected a TensorRef, got {type(ref).__name__}")
        if transferred:
            return carrier.from_block(array_from_ref(ref, mode="adopt"), extra)
        if self.keep:
            return carrier.from_block(array_from_ref(ref, mode="acquire"), extra)
        array = array_from_ref(ref, mode="borrow")
        obj = carrier.from_block(array, extra)
        if self.borrowed is not None:
            # The object holds the array: a call that keeps the object keeps
            # the array referenced, and the worker retains the block for it.
            self.borrowed.append(array)
        return obj


#: Values made only of these types pickle the same with the plain C pickler,
#: which skips building a pickler object: the common small call is cheaper.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})
_SCALARS = _PLAIN_TYPES - {bytes}
_STR = frozenset({str})
#: Most elements :func:`_is_plain` looks at before it gives up and lets the
#: pickler (with its per-object hook) decide.
_PLAIN_BUDGET = 4096


def _is_plain(obj: Any) -> bool:
    """Whether ``obj`` holds only scalars, small bytes, lists, tuples and
    str-keyed dicts, so the C pickler can take it without any hook.

    Flat containers are checked at C speed (the set of their item types);
    the walk stops after ``_PLAIN_BUDGET`` elements, so a huge argument costs
    a bounded look before the hooked pickler takes it.
    """
    budget = _PLAIN_BUDGET
    stack = [obj]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is bytes:
            if len(item) >= OUT_OF_BAND_BYTES:
                return False
            continue
        if kind is tuple or kind is list:
            budget -= 1 + len(item)
            if budget < 0:
                return False
            if set(map(type, item)) <= _SCALARS:
                continue
            stack.extend(item)
        elif kind is dict:
            budget -= 1 + len(item)
            if budget < 0 or not set(map(type, item)) <= _STR:
                return False
            values = item.values()
            if set(map(type, values)) <= _SCALARS:
                continue
            stack.extend(values)
        else:
            return False
    return True


def encode(obj: Any, *, receiver: int | None = None, snapshot: bool = True) -> Encoded:
    """Pickle ``obj``; shared arrays become descriptors.

    Large ``bytes`` and the data of arrays too small for shared memory travel
    out of band. With ``snapshot=True`` arrays' data are copied now (the
    caller may change them before the frame is sent); ``snapshot=False`` is
    for a sender that sends at once (a worker's result, a call given to an
    idle worker) or calls :func:`snapshot` before it lets the caller go on.

    Without ``receiver`` every descriptor is lent: the caller keeps
    ``Encoded.keepalive`` until the receiver is done (call arguments). With
    ``receiver`` (a pid), descriptors of blocks that the receiver does not own
    carry one block reference for it to adopt, so the sender may drop its
    arrays at once (results); blocks the receiver owns are referenced by the
    receiver itself on decode.
    Raises SerializationError(direction="encode") on failure.
    """
    if _is_plain(obj):
        return Encoded(pickle.dumps(obj, protocol=PROTOCOL))
    threshold = threshold_bytes()

    def fast(file: io.BytesIO) -> Any:
        return _FastPickler(file, receiver=receiver, threshold=threshold, snapshot=snapshot)

    def cloud(file: io.BytesIO) -> Any:
        return _CloudPickler(file, receiver=receiver, threshold=threshold, snapshot=snapshot)

    try:
        payload, pickler = two_pass(
            obj,
            fast,
            cloud,
            # Out of shared memory (or cap): say so, not "cannot serialize".
            passthrough=(SharedMemoryError,),
            cleanup=_drop_pickler_transfers,
        )
    except SharedMemoryError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize {type(obj).__name__}: {exc}", direction="encode"
        ) from exc
    return Encoded(payload, pickler.keepalive, pickler.transfers, pickler.buffers)


def _drop_pickler_transfers(pickler: Any) -> None:
    drop_transfers(pickler.transfers)


def drop_transfers(refs: list[TensorRef]) -> None:
    """Give back the block references an encoding took for its receiver
    (when the payload will not be sent after all)."""
    for ref in refs:
        drop_transfer_ref(ref)


def decode(
    blob: Blob | bytes | bytearray | memoryview,
    *,
    keep: bool = False,
    borrowed: list[np.ndarray[Any, Any]] | None = None,
) -> Any:
    """Unpickle a payload produced by :func:`encode` (its ``blob``, or a bare
    pickle without out-of-band buffers).

    ``keep=False``: lent arrays are borrowed (valid while the sender keeps
    them; call arguments in a worker) and appended to ``borrowed`` if given.
    ``keep=True``: every array holds a block reference of its own for as long
    as it lives (results in the supervisor).
    Raises SerializationError(direction="decode") on failure.
    """
    if type(blob) is tuple:
        if len(blob) != 2 or type(blob[1]) is not tuple:
            raise SerializationError("malformed payload", direction="decode")
        payload, buffers = blob
    else:
        payload, buffers = blob, ()
    if type(payload) is pickle.PickleBuffer:  # a blob made in this process
        payload = payload.raw()
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise SerializationError(f"malformed payload {type(payload).__name__}", direction="decode")
    # io.BytesIO shares a bytes object but copies anything else; a large
    # frame's view is read in place instead.
    source: Any = (
        io.BytesIO(payload)
        if type(payload) is bytes or len(payload) < _VIEW_READER_BYTES
        else _ViewReader(payload)
    )
    try:
        return _Unpickler(source, keep=keep, borrowed=borrowed, buffers=buffers).load()
    except BaseException as exc:
        # A payload may unpickle into a raised SystemExit or KeyboardInterrupt
        # (a __reduce__ that calls sys.exit): that is bad data, not a request
        # to stop. Only a real Ctrl-C, which reaches the main thread, goes on.
        if isinstance(exc, KeyboardInterrupt) and could_be_ctrl_c():
            raise
        raise SerializationError(
            f"cannot deserialize: {type(exc).__name__}: {exc}", direction="decode"
        ) from exc


def blob_size(blob: Any) -> int:
    """Bytes of a received payload (pickle and out-of-band buffers); 0 if malformed."""
    try:
        if type(blob) is tuple:
            return len(blob[0]) + sum(len(buffer) for buffer in blob[1])
        return len(blob)
    except TypeError:
        return 0


#: Payloads from this size up are unpickled through _ViewReader.
_VIEW_READER_BYTES = 1 << 20


class _ViewReader:
    """A read-only file over a buffer, for the unpickler, without copying it.

    The unpickler reads small pieces with ``read`` and fills large objects
    (bytes, arrays) with ``readinto``, so their bytes are copied once, from
    the frame into the object.
    """

    __slots__ = ("_position", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        start = self._position
        stop = len(self._view) if size < 0 else min(len(self._view), start + size)
        self._position = stop
        return bytes(self._view[start:stop])

    def readinto(self, target: Any) -> int:
        destination = memoryview(target).cast("B")
        start = self._position
        count = min(len(destination), len(self._view) - start)
        destination[:count] = self._view[start : start + count]
        self._position = start + count
        return count

    def readline(self) -> bytes:
        start = self._position
        view = self._view
        end = start
        while end < len(view) and view[end] != 0x0A:
            end += 1
        self._position = min(end + 1, len(view))
        return bytes(view[start : self._position])


def dumps_function(fn: Any) -> bytes:
    """Serialize a callable: by reference when importable, else by value."""
    try:
        return bytes(cloudpickle.dumps(fn, protocol=PROTOCOL))
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize function {fn!r}: {exc}", direction="encode"
        ) from exc
