"""The one codec for call arguments and results (pickle protocol 5).

Objects of the kinds the carriers know travel as descriptors of
shared-memory blocks (no copy): numpy arrays, torch CPU tensors, Arrow
tables (and some pandas frames, polars frames and series), and CPU arrays of
other libraries through DLPack (JAX...); CUDA tensors as IPC handles
(:mod:`._cuda_carrier`). Those already in shared memory travel as
they are; others at or above the threshold are copied once into the
sender's arena; smaller objects are pickled inline. Each carrier is a module
of :mod:`snakepit.zero_copy` (see ``zero_copy/_numpy.py`` for the protocol),
listed once in :data:`CARRIERS`; torch and pyarrow are only consulted when the
process has already imported them. Functions and lambdas that pickle cannot
send by reference go through cloudpickle.

The C pickler does the work: plain data and instances of importable
classes never call back into Python. A dispatch table names the carriers'
exact types only, and turns their objects into one flat tuple of ints and
strings (the block's fields), which the decoder validates; small arrays'
data travels out of band (see :mod:`snakepit._wire._bulk`).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit import _core
from snakepit.errors import DeviceError, DtypeError, SerializationError, SharedMemoryError
from snakepit.zero_copy import (
    _numpy,  # likewise torch: never imported here
)
from snakepit.zero_copy._ref import Fields, TensorRef, fields_of
from snakepit.zero_copy._runtime import (
    drop_transfer_ref,
    take_transfer_ref,
    threshold_bytes,
)

from . import _bulk, _cuda_carrier, _flat, _plain
from ._bulk import OUT_OF_BAND_BYTES
from ._carriers import CARRIERS, TAG_BYTEARRAY, TAG_BYTES
from ._decode import Blob, blob_size, decode
from ._plain import PROTOCOL

__all__ = [
    "BULK_RESULTS",
    "CARRIERS",
    "Blob",
    "Encoded",
    "blob_size",
    "decode",
    "drop_transfers",
    "dumps_function",
    "encode",
    "inband",
    "scalar_blob",
    "snapshot",
]

#: Whether results (encoded for a ``receiver``) send small arrays in bulk
#: too. Measured slower than the frame for results at every size from 1 to
#: 256 MiB (1.1-1.9x, in the same runs where arguments in bulk were 2-5x
#: faster from 4 MiB up): the worker's new block is memory its arena has not
#: reused yet, while the caller's arena is warm. Decoding handles both.
BULK_RESULTS = False


class Encoded:
    """A payload plus what must stay alive until the receiver is done with it.

    ``buffers`` are the out-of-band parts of the pickle (large ``bytes`` and
    array data), read when the frame is sent; ``bulk`` names the shared block
    that carries them instead, when their total reached the threshold.
    ``slots`` are descriptors of arrays beside a plain pickle (see
    ``_flat.py``), ``form`` what that pickle stands for in a result's.
    """

    # Written out, not a dataclass: its default factories cost a small
    # call's encoding a sixth of its time.
    __slots__ = ("buffers", "bulk", "form", "keepalive", "payload", "slots", "transfers")

    def __init__(
        self,
        payload: bytes,
        keepalive: list[Any] | None = None,
        transfers: list[TensorRef] | None = None,
        buffers: list[pickle.PickleBuffer] | None = None,
        bulk: tuple[Any, ...] | None = None,
        *,
        slots: tuple[tuple[Any, ...], ...] = (),
        form: str | None = None,
    ) -> None:
        self.payload = payload
        self.keepalive: list[Any] = [] if keepalive is None else keepalive
        self.transfers: list[TensorRef] = [] if transfers is None else transfers
        self.buffers: list[pickle.PickleBuffer] = [] if buffers is None else buffers
        self.bulk = bulk
        self.slots = slots
        self.form = form

    def __repr__(self) -> str:
        kept, slots = len(self.keepalive), len(self.slots)
        return f"Encoded({len(self.payload)} bytes, {kept} kept, {slots} slots)"

    @property
    def blob(self) -> Blob:
        """This payload in the form a frame carries (large parts out of band)."""
        payload: Any = self.payload
        if len(payload) >= OUT_OF_BAND_BYTES:
            payload = pickle.PickleBuffer(payload)
        if self.bulk is not None:
            return payload, (), self.bulk
        if self.slots:
            return payload, (), self.form, self.slots
        return payload, tuple(self.buffers)

    @property
    def size(self) -> int:
        """Bytes on the wire: the pickle and its out-of-band buffers (or
        the data of small arrays beside a flat pickle)."""
        if self.slots:
            return len(self.payload) + _flat.inline_bytes(self.slots)
        if not self.buffers:
            return len(self.payload)
        return len(self.payload) + sum(buffer.raw().nbytes for buffer in self.buffers)


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


def _shared(*fields: Any) -> Any:
    """The name under which descriptors are pickled: only :func:`decode`
    opens them (its unpickler resolves this name to its own loader)."""
    raise pickle.UnpicklingError("a snakepit descriptor is opened by snakepit's codec only")


class _Sender:
    """One encoding's state: the carriers' reducer, the out-of-band buffers,
    and what the receiver needs kept alive or handed over.

    Apart from any pickler: pickler -> reducer -> pickler would be a cycle,
    keeping the sent arrays (and their blocks) alive until the next GC.
    """

    __slots__ = (
        "carriers",
        "copies",
        "keepalive",
        "receiver",
        "sink",
        "threshold",
        "transfers",
    )

    def __init__(
        self, receiver: int | None, threshold: int, carriers: dict[type, ModuleType] | None = None
    ) -> None:
        self.receiver = receiver
        self.threshold = threshold
        self.carriers = _carrier_table() if carriers is None else carriers
        self.keepalive: list[Any] = []
        self.transfers: list[TensorRef] = []
        self.sink = _bulk.OutOfBand()
        # id(obj) -> (obj, its shared copy): a second pass (cloudpickle)
        # reuses the copies of the first instead of copying again.
        self.copies: dict[int, tuple[Any, Any]] = {}

    def reset(self) -> None:
        """Forget a failed pass (giving back the references it took)."""
        drop_transfers(self.transfers)
        self.transfers = []
        self.keepalive = []
        self.sink = _bulk.OutOfBand()

    def _to_block(self, carrier: ModuleType, obj: Any) -> Any:
        copied = self.copies.get(id(obj))
        if copied is not None and copied[0] is obj:
            return copied[1]
        found = carrier.to_block(obj, self.threshold)
        if found is not None and found[0] is not obj:
            self.copies[id(obj)] = (obj, found)
        return found

    def dispatch_table(self) -> dict[Any, Any]:
        """copyreg's reducers, and ours for the carriers' exact types: pickle
        calls back into Python for those objects only."""
        table: dict[Any, Any] = dict(copyreg.dispatch_table)
        table[memoryview] = _bulk.reduce_memoryview
        for kind in self.carriers:
            table[kind] = self.reduce
        return table

    def reduce(self, obj: Any) -> Any:
        """A carrier's object as a flat descriptor of its shared block, or as
        pickle would reduce it (small, or not shareable)."""
        carrier = self.carriers[type(obj)]
        try:
            # An array already shared (the common case) is described at once.
            fields = fields_of(obj) if carrier is _numpy else None
            if fields is not None:
                array, extra = obj, None
            else:
                found = self._to_block(carrier, obj)
                if found is None:  # device memory goes by IPC handle
                    return _cuda_carrier.reduce(self, obj) or obj.__reduce_ex__(PROTOCOL)
                array, extra = found
                fields = fields_of(array)
        except DtypeError:
            fields = None  # a view with a dtype that cannot be named: pickle it
        if fields is None:
            return obj.__reduce_ex__(PROTOCOL)
        # The sender keeps every shared array alive until the receiver is done.
        self.keepalive.append(array)
        transferred = self._transferred(fields, array)
        # Flat: the pickler writes these at C speed, no object per descriptor.
        return _shared, (carrier.tag, transferred, *fields, extra)

    def _transferred(self, fields: Fields, array: np.ndarray[Any, Any]) -> bool:
        """Whether the block travels with a reference for the receiver (taken now)."""
        if self.receiver is None or _core.name_owner(fields[0]) == self.receiver:
            # Borrowed: the receiver owns the block or the sender outlives its use.
            return False
        self.transfers.append(take_transfer_ref(array))
        return True

    def finish(self, payload: bytes, snapshot: bool) -> Encoded:
        """The encoding: out-of-band buffers in one shared block from the
        threshold up, else beside the pickle (copies if ``snapshot``)."""
        sink = self.sink
        buffers = sink.buffers
        bulk = None
        if sink.bulk(self.threshold) and (self.receiver is None or BULK_RESULTS):
            block, spans = _bulk.pack(buffers)
            fields = fields_of(block)
            assert fields is not None  # allocated in the arena
            self.keepalive.append(block)
            transferred = self._transferred(fields, block)
            bulk = (transferred, *fields[:4], spans)
            buffers = []
        elif snapshot:
            buffers = [_bulk.copy_of(buffer) for buffer in buffers]
        return Encoded(payload, self.keepalive, self.transfers, buffers, bulk)


class _FastPickler(pickle.Pickler):
    """The C pickler: plain data never calls back into Python."""

    def __init__(self, file: io.BytesIO, sender: _Sender) -> None:
        # Before __init__: the C pickler reads its dispatch table there.
        self.dispatch_table = sender.dispatch_table()
        super().__init__(file, protocol=PROTOCOL, buffer_callback=sender.sink)


class _Reused(threading.local):
    """One thread's sender, pickler and file, kept between encodings:
    building them is about half of encoding a call with a shared array.
    Busy while in use (an encoding inside a reducer builds its own); kept
    only after an encoding that succeeded with a small pickle, and then
    emptied, so that nothing of a payload stays referenced and no large
    file buffer stays allocated."""

    def __init__(self) -> None:
        self.busy = False
        self.sender: _Sender | None = None
        self.pickler: _FastPickler | None = None
        self.file = io.BytesIO()


_reused = _Reused()
#: Pickles longer than this are not kept by the reused file's buffer.
_REUSED_FILE_BYTES = 64 << 10


def _take_reused(receiver: int | None, threshold: int) -> _Sender | None:
    """This thread's reused sender, rearmed for an encoding; None if busy."""
    state = _reused
    if state.busy:
        return None
    carriers = _carrier_table()
    sender = state.sender
    if sender is None or sender.carriers is not carriers:
        sender = _Sender(receiver, threshold, carriers)
        state.file = io.BytesIO()
        state.pickler = _FastPickler(state.file, sender)
        state.sender = sender
    else:
        sender.receiver, sender.threshold = receiver, threshold
    state.busy = True
    return sender


def _dump_reused(obj: Any) -> bytes:
    pickler = _reused.pickler
    assert pickler is not None
    pickler.dump(obj)
    return _reused.file.getvalue()


def _give_back(sender: _Sender, keep: bool) -> None:
    """End an encoding with the reused sender: empty it for the next one
    (its lists went out in the Encoded), or drop it."""
    state = _reused
    state.busy = False
    if not keep or state.pickler is None:
        state.sender = state.pickler = None
        return
    state.pickler.clear_memo()  # the memo refers to every object pickled
    state.file.seek(0)
    state.file.truncate()
    sender.keepalive, sender.transfers, sender.copies = [], [], {}
    sender.sink.buffers, sender.sink.nbytes = [], 0


class _BytesPickler(_FastPickler):
    """For payloads holding large ``bytes`` or ``bytearray``, which the C
    pickler would copy into the pickle: they go out of band as persistent ids."""

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if (kind is bytes or kind is bytearray) and len(obj) >= OUT_OF_BAND_BYTES:
            # The buffer in the id goes out of band, in pickle's own order.
            return (TAG_BYTES if kind is bytes else TAG_BYTEARRAY, pickle.PickleBuffer(obj))
        return None


_cloud_pickler: type[Any] | None = None


def _cloud_pickler_class() -> type[Any]:
    """The pickler for what plain pickle cannot send, made on first use.

    cloudpickle costs a process about 10 ms to import, and a worker needs it
    only when a result holds a lambda or a ``__main__`` class (which is rare).
    """
    global _cloud_pickler
    if _cloud_pickler is None:
        import cloudpickle

        class _CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
            """cloudpickle: functions from ``__main__``, lambdas and closures by value."""

            def __init__(self, file: io.BytesIO, sender: _Sender) -> None:
                table = dict(cloudpickle.Pickler.dispatch_table)
                table.update(sender.dispatch_table())
                # Before __init__: the C pickler reads its dispatch table there.
                self.dispatch_table = table
                super().__init__(file, protocol=PROTOCOL, buffer_callback=sender.sink)

        _cloud_pickler = _CloudPickler
    return _cloud_pickler


#: In every pickle that names something in ``__main__`` (which a worker's
#: ``__main__`` does not have): such payloads go through cloudpickle.
_MAIN = b"__main__"
#: Failures that keep their type through encode and decode (not "cannot serialize").
_TYPED = (SharedMemoryError, DeviceError)


def encode(obj: Any, *, receiver: int | None = None, snapshot: bool = True) -> Encoded:
    """Pickle ``obj``; shared arrays become descriptors.

    Large ``bytes`` and the data of arrays too small for shared memory travel
    out of band: beside the pickle, or in one shared block when their total
    reaches the threshold. With ``snapshot=True`` arrays' data are copied now
    (the caller may change them before the frame is sent); ``snapshot=False``
    is for a sender that sends at once (a worker's result, a call given to an
    idle worker) or calls :func:`snapshot` before it lets the caller go on.

    Without ``receiver`` every descriptor is lent: the caller keeps
    ``Encoded.keepalive`` until the receiver is done (call arguments). With
    ``receiver`` (a pid), descriptors of blocks that the receiver does not own
    carry one block reference for it to adopt, so the sender may drop its
    arrays at once (results); blocks the receiver owns are referenced by the
    receiver itself on decode.
    Raises SerializationError(direction="encode") on failure.
    """
    if type(obj) in _plain.SCALARS:  # a result None, a number: nothing to walk
        return Encoded(pickle.dumps(obj, protocol=PROTOCOL))
    if receiver is None:
        if (  # a call without arguments (a no-op, a control call): pickled once
            type(obj) is tuple
            and len(obj) == 2
            and type(obj[0]) is tuple
            and not obj[0]
            and type(obj[1]) is dict
            and not obj[1]
        ):
            return Encoded(_plain.NO_ARGUMENTS_PAYLOAD)
        flat = _flat.encode(obj)  # call arguments: scalars and plain arrays
        if flat is not None:
            payload, arrays, slots = flat
            return Encoded(payload, arrays, slots=slots)
    else:
        result = _flat.encode_result(obj, receiver)  # arrays, alone or in a tuple or dict
        if result is not None:
            payload, form, slots, keepalive, transfers = result
            return Encoded(payload, keepalive, transfers, slots=slots, form=form)
    found = _plain.scan(obj)
    if found == _plain.PLAIN:
        return Encoded(pickle.dumps(obj, protocol=PROTOCOL))
    big_bytes = found in (_plain.BIG_BYTES, _plain.OTHER_BIG_BYTES)
    threshold = threshold_bytes()
    reused = None if big_bytes else _take_reused(receiver, threshold)
    sender = _Sender(receiver, threshold) if reused is None else reused
    keep = False
    try:
        try:
            if reused is not None:
                payload = _dump_reused(obj)
            else:
                payload = _dump(_BytesPickler if big_bytes else _FastPickler, obj, sender)
            # Plain pickle names functions and classes of ``__main__`` (which
            # the receiver's is not): only cloudpickle sends them by value.
            retry = found != _plain.BIG_BYTES and payload.find(_MAIN) >= 0
        except _TYPED:
            raise
        except Exception:
            retry = True  # lambdas, closures, local classes
        if retry:
            sender.reset()
            payload = _dump(_cloud_pickler_class(), obj, sender)
        encoded = sender.finish(payload, snapshot)
        keep = not retry and len(payload) <= _REUSED_FILE_BYTES
        return encoded
    except _TYPED:
        # Out of shared memory (or cap), a CUDA failure: say so, not "cannot serialize".
        drop_transfers(sender.transfers)
        raise
    except Exception as exc:
        drop_transfers(sender.transfers)
        raise SerializationError(
            f"cannot serialize {type(obj).__name__}: {exc}", direction="encode"
        ) from exc
    finally:
        if reused is not None:
            _give_back(reused, keep)


def scalar_blob(value: Any) -> Blob | None:
    """The blob :func:`encode` gives a small scalar (a reply ``None``, a
    number, a short string), made without an :class:`Encoded`; None for
    anything else."""
    if value is None:
        return _plain.NONE_PAYLOAD, ()
    if type(value) not in _plain.SCALARS:
        return None
    payload = pickle.dumps(value, protocol=PROTOCOL)
    return (payload, ()) if len(payload) < OUT_OF_BAND_BYTES else None


def inband(blob: Blob) -> bool:
    """Whether ``blob`` holds no out-of-band buffer (a small pickle, its
    arrays' descriptors or small data beside it): its frame can be packed
    with ``protocol.pack(..., inband=True)``."""
    return len(blob) in (2, 4) and type(blob[0]) is bytes and not blob[1]


def _dump(pickler: type[Any], obj: Any, sender: _Sender) -> bytes:
    file = io.BytesIO()
    pickler(file, sender).dump(obj)
    return file.getvalue()


def snapshot(blob: Blob) -> Blob:
    """``blob`` with its out-of-band array data copied, for a payload encoded
    with ``snapshot=False`` that will not be sent at once after all (a queued
    call: the caller may change its arrays after ``submit`` returns). Data
    in a shared block is a copy already."""
    if len(blob) != 2:
        return blob
    payload, buffers = blob
    return payload, tuple(_bulk.copy_of(buffer) for buffer in buffers)


def drop_transfers(refs: list[TensorRef]) -> None:
    """Give back the block references an encoding took for its receiver
    (when the payload will not be sent after all)."""
    for ref in refs:
        drop_transfer_ref(ref)


def dumps_function(fn: Any) -> bytes:
    """Serialize a callable: by reference when importable, else by value."""
    import cloudpickle  # first use (a worker never sends a function this way)

    try:
        return bytes(cloudpickle.dumps(fn, protocol=PROTOCOL))
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize function {fn!r}: {exc}", direction="encode"
        ) from exc
