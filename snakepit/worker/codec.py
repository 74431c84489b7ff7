"""The one codec for call arguments and results (pickle protocol 5).

Arrays already in snakepit shared memory travel as TensorRef descriptors (no
copy). Other numpy arrays at or above the threshold are copied once into the
sender's arena and travel the same way; smaller objects are pickled inline.
Functions and lambdas that pickle cannot send by reference go through
cloudpickle. Arrow tables (and some pandas frames) at or above the threshold
travel as ArrowRef descriptors of an IPC stream in shared memory; pyarrow is
only consulted when the process has already imported it.
"""

from __future__ import annotations

import io
import pickle
import sys
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any

import cloudpickle
import numpy as np

from snakepit.errors import DtypeError, SerializationError, SharedMemoryError
from snakepit.zero_copy import (
    TensorRef,
    _arrow,  # pyarrow itself is imported on first use only
    _torch,  # likewise torch: never imported here
    describe,
    from_ref,
    share,
    take_transfer_ref,
    threshold_bytes,
)

PROTOCOL = 5
_TAG_ARRAY = "snakepit.array"
_TAG_ARROW = "snakepit.arrow"
_TAG_TORCH = "snakepit.torch"
_NO_TYPES: frozenset[type] = frozenset()


@dataclass
class Encoded:
    """A payload plus what must stay alive until the receiver is done with it."""

    payload: bytes
    keepalive: list[Any] = field(default_factory=list)
    transfers: list[TensorRef] = field(default_factory=list)


class _NeedsCloudpickleError(Exception):
    """Raised by the fast pickler for objects only cloudpickle sends correctly."""


class _ArrayIds:
    """Persistent ids that turn arrays into shared-memory descriptors."""

    by_value_check = False
    receiver: int | None
    threshold: int
    keepalive: list[Any]
    transfers: list[TensorRef]
    frame_types: frozenset[type]
    tensor_type: type | None

    def _setup(self, receiver: int | None, threshold: int) -> None:
        self.receiver = receiver
        self.threshold = threshold
        self.keepalive = []
        self.transfers = []
        self.frame_types = _frame_types()
        self.tensor_type = _torch.tensor_type()

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is not np.ndarray:
            if kind in self.frame_types:
                return self._frame_id(obj)
            if kind is self.tensor_type:
                return self._tensor_id(obj)
            # Plain pickle would send these by reference, and a worker's
            # __main__ is not the caller's: only cloudpickle sends them by value.
            if (
                self.by_value_check
                and (kind is FunctionType or kind is type)
                and obj.__module__ == "__main__"
            ):
                raise _NeedsCloudpickleError
            return None
        if obj.dtype.hasobject:
            return None
        ref = describe(obj)
        if ref is None:
            if obj.nbytes < self.threshold:
                return None
            try:
                obj = share(obj)
            except DtypeError:
                return None  # e.g. structured dtypes: plain pickling still works
            ref = describe(obj)
            if ref is None:  # cannot happen: share() allocates in the arena
                return None
        # The sender keeps every shared array alive until the receiver is done.
        self.keepalive.append(obj)
        if self.receiver is None or _owner(ref) == self.receiver:
            # Borrowed: the receiver owns the block or the sender outlives its use.
            return (_TAG_ARRAY, ref, False)
        ref = take_transfer_ref(obj)
        self.transfers.append(ref)
        return (_TAG_ARRAY, ref, True)

    def _tensor_id(self, tensor: Any) -> Any:
        """A torch CPU tensor as a TensorRef and its dtype (see _torch.shared_copy)."""
        found = _torch.shared_copy(tensor, self.threshold)
        if found is None:
            return None
        array, dtype_name = found
        ref = describe(array)
        if ref is None:  # cannot happen: share() allocates in the arena
            return None
        self.keepalive.append(array)
        if self.receiver is None or _owner(ref) == self.receiver:
            return (_TAG_TORCH, ref, False, dtype_name)
        ref = take_transfer_ref(array)
        self.transfers.append(ref)
        return (_TAG_TORCH, ref, True, dtype_name)

    def _frame_id(self, obj: Any) -> Any:
        """An Arrow table or pandas frame as an ArrowRef (see _arrow.block_of)."""
        found = _arrow.block_of(obj, self.threshold)
        if found is None:
            return None
        array, kind = found
        ref = describe(array)
        if ref is None:  # cannot happen: streams are written into the arena
            return None
        self.keepalive.append(array)
        if self.receiver is None or _owner(ref) == self.receiver:
            return (_TAG_ARROW, _arrow.ArrowRef(ref, kind), False)
        ref = take_transfer_ref(array)
        self.transfers.append(ref)
        return (_TAG_ARROW, _arrow.ArrowRef(ref, kind), True)


def _frame_types() -> frozenset[type]:
    # Never import pyarrow here: a process that has not imported it has no tables.
    if "pyarrow" not in sys.modules:
        return _NO_TYPES
    return _arrow.frame_types()


class _FastPickler(_ArrayIds, pickle.Pickler):
    """The C pickler: most messages need nothing more."""

    by_value_check = True

    def __init__(self, file: io.BytesIO, *, receiver: int | None, threshold: int) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._setup(receiver, threshold)


class _CloudPickler(_ArrayIds, cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle: functions from ``__main__``, lambdas and closures by value."""

    def __init__(self, file: io.BytesIO, *, receiver: int | None, threshold: int) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._setup(receiver, threshold)


def _owner(ref: TensorRef) -> int:
    return int(ref.region.split("-", 2)[1])


class _Unpickler(pickle.Unpickler):
    def __init__(
        self, file: io.BytesIO, *, keep: bool, borrowed: list[np.ndarray[Any, Any]] | None
    ) -> None:
        super().__init__(file)
        self.keep = keep
        self.borrowed = borrowed

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 3 and pid[0] == _TAG_ARRAY:
            ref, transferred = pid[1], pid[2]
            if isinstance(ref, TensorRef):
                if transferred:
                    return from_ref(ref, mode="adopt")
                if self.keep:
                    return from_ref(ref, mode="acquire")
                array = from_ref(ref, mode="borrow")
                if self.borrowed is not None:
                    self.borrowed.append(array)
                return array
        if type(pid) is tuple and len(pid) == 3 and pid[0] == _TAG_ARROW:
            return self._load_frame(pid[1], pid[2])
        if type(pid) is tuple and len(pid) == 4 and pid[0] == _TAG_TORCH:
            return self._load_tensor(pid[1], pid[2], pid[3])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

    def _load_tensor(self, ref: Any, transferred: Any, dtype_name: Any) -> Any:
        if not isinstance(ref, TensorRef):
            raise pickle.UnpicklingError(f"expected a TensorRef, got {type(ref).__name__}")
        if transferred:
            return _torch.tensor_over(from_ref(ref, mode="adopt"), dtype_name)
        if self.keep:
            return _torch.tensor_over(from_ref(ref, mode="acquire"), dtype_name)
        array = from_ref(ref, mode="borrow")
        tensor = _torch.tensor_over(array, dtype_name)
        if self.borrowed is not None:
            # The tensor holds the array: a call that keeps the tensor keeps
            # the array referenced, and the worker retains the block for it.
            self.borrowed.append(array)
        return tensor

    def _load_frame(self, ref: Any, transferred: Any) -> Any:
        if not isinstance(ref, _arrow.ArrowRef):
            raise pickle.UnpicklingError(f"expected an ArrowRef, got {type(ref).__name__}")
        if transferred:
            return _arrow.open_ref(ref, mode="adopt")[0]
        if self.keep:
            return _arrow.open_ref(ref, mode="acquire")[0]
        table, array = _arrow.open_ref(ref, mode="borrow")
        if self.borrowed is not None:
            self.borrowed.append(array)
        return table


#: Values made only of these types pickle the same with the plain C pickler,
#: which skips building a pickler object: the common small call is cheaper.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})


def _is_plain(obj: Any, depth: int = 0) -> bool:
    kind = type(obj)
    if kind in _PLAIN_TYPES:
        return True
    if depth > 2:
        return False
    if kind is tuple or kind is list:
        return len(obj) <= 16 and all(_is_plain(item, depth + 1) for item in obj)
    if kind is dict:
        return len(obj) <= 16 and all(
            type(key) is str and _is_plain(value, depth + 1) for key, value in obj.items()
        )
    return False


def encode(obj: Any, *, receiver: int | None = None) -> Encoded:
    """Pickle ``obj``; shared arrays become descriptors.

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
    failure: Exception | None = None
    for pickler_class in (_FastPickler, _CloudPickler):
        buffer = io.BytesIO()
        pickler = pickler_class(buffer, receiver=receiver, threshold=threshold)
        try:
            pickler.dump(obj)
        except SharedMemoryError:
            # Out of shared memory (or cap): say so, not "cannot serialize".
            _drop_transfers(pickler.transfers)
            raise
        except Exception as exc:
            _drop_transfers(pickler.transfers)
            failure = exc
            continue
        return Encoded(buffer.getvalue(), pickler.keepalive, pickler.transfers)
    raise SerializationError(
        f"cannot serialize {type(obj).__name__}: {failure}", direction="encode"
    ) from failure


def _drop_transfers(refs: list[TensorRef]) -> None:
    from snakepit.zero_copy import drop_transfer_ref

    for ref in refs:
        drop_transfer_ref(ref)


def decode(
    payload: bytes | bytearray,
    *,
    keep: bool = False,
    borrowed: list[np.ndarray[Any, Any]] | None = None,
) -> Any:
    """Unpickle a payload produced by :func:`encode`.

    ``keep=False``: lent arrays are borrowed (valid while the sender keeps
    them; call arguments in a worker) and appended to ``borrowed`` if given.
    ``keep=True``: every array holds a block reference of its own for as long
    as it lives (results in the supervisor).
    Raises SerializationError(direction="decode") on failure.
    """
    try:
        return _Unpickler(io.BytesIO(payload), keep=keep, borrowed=borrowed).load()
    except Exception as exc:
        raise SerializationError(f"cannot deserialize: {exc}", direction="decode") from exc


def dumps_function(fn: Any) -> bytes:
    """Serialize a callable: by reference when importable, else by value."""
    try:
        return bytes(cloudpickle.dumps(fn, protocol=PROTOCOL))
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize function {fn!r}: {exc}", direction="encode"
        ) from exc
