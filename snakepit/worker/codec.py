"""The one codec for call arguments and results (pickle protocol 5).

Arrays already in snakepit shared memory travel as TensorRef descriptors (no
copy). Other numpy arrays at or above the threshold are copied once into the
sender's arena and travel the same way; smaller objects are pickled inline.
Functions and lambdas that pickle cannot send by reference go through
cloudpickle.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np

from snakepit.errors import DtypeError, SerializationError
from snakepit.zero_copy import (
    TensorRef,
    from_ref,
    is_shared,
    ref_of,
    share,
    take_transfer_ref,
    threshold_bytes,
)
from snakepit.zero_copy._memory import RefMode

PROTOCOL = 5
_TAG_ARRAY = "snakepit.array"


@dataclass
class Encoded:
    """A payload plus what must stay alive until the receiver is done with it."""

    payload: bytes
    keepalive: list[Any] = field(default_factory=list)
    transfers: list[TensorRef] = field(default_factory=list)


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle (functions from ``__main__``, lambdas, closures by value)
    plus persistent ids that turn arrays into shared-memory descriptors."""

    def __init__(self, file: io.BytesIO, *, transfer: bool, threshold: int) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self.transfer = transfer
        self.threshold = threshold
        self.keepalive: list[Any] = []
        self.transfers: list[TensorRef] = []

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not np.ndarray or obj.dtype.hasobject:
            return None
        if is_shared(obj):
            shared = obj
        elif obj.nbytes >= self.threshold:
            try:
                shared = share(obj)
            except DtypeError:
                return None  # e.g. structured dtypes: plain pickling still works
            self.keepalive.append(shared)
        else:
            return None
        if self.transfer:
            ref = take_transfer_ref(shared)
            self.transfers.append(ref)
        else:
            ref = ref_of(shared)
        return (_TAG_ARRAY, ref)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, *, mode: RefMode) -> None:
        super().__init__(file)
        self.mode: RefMode = mode

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is tuple and len(pid) == 2 and pid[0] == _TAG_ARRAY:
            ref = pid[1]
            if isinstance(ref, TensorRef):
                return from_ref(ref, mode=self.mode)
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def encode(obj: Any, *, transfer: bool = False) -> Encoded:
    """Pickle ``obj``; shared arrays become descriptors.

    ``transfer=True`` adds a block reference per descriptor for the receiver to
    adopt (used for results, whose sender may drop its own reference at once).
    Raises SerializationError(direction="encode") on failure.
    """
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, transfer=transfer, threshold=threshold_bytes())
    try:
        pickler.dump(obj)
    except Exception as exc:
        _drop_transfers(pickler.transfers)
        raise SerializationError(
            f"cannot serialize {type(obj).__name__}: {exc}", direction="encode"
        ) from exc
    return Encoded(buffer.getvalue(), pickler.keepalive, pickler.transfers)


def _drop_transfers(refs: list[TensorRef]) -> None:
    from snakepit.zero_copy import drop_transfer_ref

    for ref in refs:
        drop_transfer_ref(ref)


def decode(payload: bytes | bytearray, *, mode: RefMode = "borrow") -> Any:
    """Unpickle a payload produced by :func:`encode`.

    ``mode`` says how descriptors become arrays (see ``snakepit.from_ref``).
    Raises SerializationError(direction="decode") on failure.
    """
    try:
        return _Unpickler(io.BytesIO(payload), mode=mode).load()
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
