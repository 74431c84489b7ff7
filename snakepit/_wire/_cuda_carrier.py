"""The CUDA carrier of the codec: device memory travels as a CUDA IPC handle.

A torch or CuPy CUDA tensor, or any object whose ``__dlpack_device__`` is
CUDA and that has ``__cuda_array_interface__``, at or above the zero-copy
threshold, is described by a :class:`~snakepit.zero_copy.GPUTensorRef`
(the handle of its base allocation plus the offset of its first element)
and rebuilt in the receiver over the same device memory, as a tensor of the
sender's library: ``torch.Tensor``, ``cupy.ndarray``, or else the opened
:class:`~snakepit.zero_copy.CudaIPCTensor` itself (``__cuda_array_interface__``
v3, ``__dlpack_device__``). Nothing is copied.

Ordering: the producing stream is synchronised before the handle is taken
(torch's current stream; the stream named by ``__cuda_array_interface__``),
so the receiver reads finished data without an event; a worker that received
device memory synchronises its devices before it replies (see
:func:`~snakepit.zero_copy._cuda_leases.settle`), so the caller sees the
call's in-place writes. Lifetime: :mod:`snakepit.zero_copy._cuda_leases`.

Neither torch nor CuPy is imported here: the sender holds one of their
tensors (so has the library), and the receiver imports the library the
descriptor names, as the torch CPU carrier does. snakepit's own CUDA
modules are imported with the first CUDA object sent or received: a
process that never sees one (most workers) does not pay ~3 ms of imports
for them at its start.
"""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from snakepit.zero_copy._cuda import CudaIPCTensor, GPUTensorRef

from snakepit._util import DTYPE_NAMES
from snakepit.errors import InvalidDescriptorError, SnakepitError, UnshareableMemoryError
from snakepit.telemetry import _bus
from snakepit.telemetry._events import CUDA_COPY
from snakepit.zero_copy._dlpack import DL_CUDA
from snakepit.zero_copy._dtypes import c_strides, dtype_name
from snakepit.zero_copy._mapping import RefMode
from snakepit.zero_copy._ref import array_from_fields, fields_of

TAG = "snakepit.cuda"
#: The codec's name for this carrier (carrier protocol).
tag = TAG
#: How the receiver rebuilds what arrives (the sender's library).
LIBRARIES = frozenset({"torch", "cupy", "cuda"})
_CUDA_MODULE = "snakepit.zero_copy._cuda"
_NO_TYPES: frozenset[type] = frozenset()
_types: frozenset[type] | None = None
_gpu_fields: tuple[str, ...] | None = None


def types() -> frozenset[type]:
    """Carrier protocol (see ``zero_copy/_numpy.py``): snakepit's own CUDA views,
    which reach :func:`reduce` like any other CUDA array. None exists before
    the module that defines them is loaded, so until then there are none."""
    global _types
    if _types is None:
        cuda = sys.modules.get(_CUDA_MODULE)
        if cuda is None:
            return _NO_TYPES
        from snakepit.zero_copy._cuda_arrays import CudaArray

        _types = frozenset({cuda.CudaIPCTensor, CudaArray, LocalCudaView})
    return _types


def _fields() -> tuple[str, ...]:
    """The fields of a GPUTensorRef, in order (what a descriptor carries)."""
    global _gpu_fields
    if _gpu_fields is None:
        from snakepit.zero_copy._cuda import GPUTensorRef

        _gpu_fields = tuple(field.name for field in dataclasses.fields(GPUTensorRef))
    return _gpu_fields


def to_block(obj: Any, threshold: int) -> None:
    """Carrier protocol: device memory has no shared block (:func:`reduce` describes it)."""
    return None


def from_block(array: np.ndarray[Any, Any], extra: object) -> Any:
    """Carrier protocol: no block descriptor names this carrier."""
    raise InvalidDescriptorError("a CUDA descriptor cannot name a shared-memory block")


def _shared(*fields: Any) -> Any:
    """The name CUDA descriptors are pickled under (only the codec opens them)."""
    raise pickle.UnpicklingError("a snakepit descriptor is opened by snakepit's codec only")


Described = tuple[int, tuple[int, ...], str, tuple[int, ...], int, str, Any]


def _described(obj: Any) -> Described | None:
    """``(ptr, shape, dtype, byte strides, device, library, holder)`` of a
    CUDA object, with its producing stream synchronised (``holder`` keeps the
    memory alive: the object, or what DLPack gave for it); None if it is not
    one this carrier takes (the codec then pickles it as its type defines)."""
    import numpy as np

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if not obj.is_cuda or obj.layout != torch.strided or obj.requires_grad:
            return None
        if obj.is_conj() or obj.is_neg() or obj.is_quantized:
            return None
        name = str(obj.dtype).removeprefix("torch.")
        if name not in DTYPE_NAMES:
            return None
        size = obj.element_size()
        device = obj.device.index if obj.device.index is not None else torch.cuda.current_device()
        # Work queued on the tensor's stream finishes before its handle goes out.
        torch.cuda.current_stream(device).synchronize()
        strides = tuple(stride * size for stride in obj.stride())
        return obj.data_ptr(), tuple(obj.shape), name, strides, device, "torch", obj
    try:
        kind, device = obj.__dlpack_device__()
        if int(kind) != DL_CUDA:
            return None  # host memory (a small numpy array): no CUDA module loads
    except Exception:
        return None
    from snakepit.zero_copy import _cuda_leases

    try:
        if not hasattr(obj, "__cuda_array_interface__"):
            return _from_dlpack(obj)
        interface = obj.__cuda_array_interface__
        ptr = int(interface["data"][0])
        shape = tuple(int(n) for n in interface["shape"])
        name = dtype_name(np.dtype(interface["typestr"]))
        given = interface.get("strides")
        strides = (
            c_strides(shape, np.dtype(interface["typestr"]).itemsize)
            if given is None
            else tuple(int(s) for s in given)
        )
        stream = interface.get("stream")
    except Exception:
        return None  # not a CUDA array this carrier can describe: its own pickling decides
    if stream is not None:
        _cuda_leases.synchronize(int(device), int(stream))
    library = "cupy" if type(obj).__module__.partition(".")[0] == "cupy" else "cuda"
    return ptr, shape, name, strides, int(device), library, obj


def _from_dlpack(obj: Any) -> Described | None:
    """A CUDA producer with DLPack only (no ``__cuda_array_interface__``)."""
    from snakepit.zero_copy import _cuda_leases
    from snakepit.zero_copy._cuda_arrays import CudaArray

    try:
        array = CudaArray.from_dlpack(obj)
    except (BufferError, TypeError, ValueError):
        return None
    # Asked with stream=None: the producer ordered its work before the legacy
    # default stream, which is waited for here.
    _cuda_leases.synchronize(array.device_id, 1)
    return array.ptr, array.shape, array.dtype, array.strides, array.device_id, "cuda", array


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    import numpy as np

    count = 1
    for dim in shape:
        count *= dim
    return count * np.dtype(dtype if dtype != "bfloat16" else "int16").itemsize


def reduce(sender: Any, obj: Any) -> Any:
    """The codec's reduction of a CUDA object (``sender``: the codec's
    ``_Sender``), or None when the object is not one or is below the threshold.

    The handle goes out with a lease on the object: the encoding pins it
    until the payload is done with, and consumers hold its token.
    """
    found = _described(obj)
    if found is None:
        return None
    from snakepit.zero_copy import _cuda_leases
    from snakepit.zero_copy._cuda import export_cuda
    from snakepit.zero_copy._cuda_memory import export_cuda_copy

    ptr, shape, name, strides, device, library, holder = found
    if _nbytes(shape, name) < sender.threshold or ptr == 0:
        return None
    peer = _cuda_leases.forwarded(ptr)
    if peer is not None:
        # A peer's memory sent on (or back): its own handle and token travel.
        root, base, token = peer
        ref = dataclasses.replace(root, offset=ptr - base, shape=shape, dtype=name, strides=strides)
        ref.validate()
        sender.keepalive.append(obj)
    else:
        try:
            ref = export_cuda(ptr, shape, name, strides, device)
            held: Any = holder
        except UnshareableMemoryError as exc:
            # Memory the handle cannot name: one device-to-device copy that can.
            ref, held = export_cuda_copy(ptr, shape, name, strides, device)
            _copied(exc, _nbytes(shape, name), device)
        token, pin = _cuda_leases.lease(held, ref, ptr)
        sender.keepalive.append(pin)
    fields = fields_of(token)
    assert fields is not None  # a token is a block of its producer's arena
    transferred = sender._transferred(fields, token)
    values = tuple(getattr(ref, field) for field in _fields())
    return _shared, (TAG, transferred, values, library, fields)


_warned: set[str] = set()


def _copied(exc: UnshareableMemoryError, nbytes: int, device: int) -> None:
    """Say (once per memory kind) and record (every time) that a tensor was copied."""
    kind = exc.memory_kind or "unknown"
    reason = exc.reason or str(exc)
    if _bus.enabled(CUDA_COPY):
        _bus.execute(
            CUDA_COPY,
            {"bytes": nbytes},
            {"memory_kind": kind, "device": f"cuda:{device}", "reason": reason},
        )
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(
            f"a CUDA tensor in {kind} memory was copied once to travel to another process "
            f"({reason}); the receiver gets the copy, so its writes are not seen by the "
            "sender. Allocate it with cudaMalloc (torch: no expandable_segments) to share it.",
            RuntimeWarning,
            stacklevel=2,
        )


def open_descriptor(
    fields: tuple[Any, ...],
    keep: bool,
    borrowed: list[np.ndarray[Any, Any]] | None,
    failures: list[BaseException],
) -> Any:
    """The receiver's object for a CUDA descriptor (what ``_shared`` names in a payload).

    A descriptor that cannot be opened appends its error to ``failures`` and
    gives None: decoding goes on, so every later descriptor's token
    reference is adopted and let go (the producer frees what nobody will
    use), and :func:`checked` raises the first error at the end: an
    InvalidDescriptorError for a malformed one, or what
    :func:`~snakepit.zero_copy.open_cuda` raises (DeviceNotAvailableError,
    DeviceError).
    """
    try:
        return _opened(fields, keep, borrowed)
    except SnakepitError as exc:
        failures.append(exc)
        return None


def checked(value: Any, failures: list[BaseException]) -> Any:
    """``value``, decoded, unless a CUDA descriptor in it failed to open (raised)."""
    if failures:
        raise failures[0]
    return value


def _opened(
    fields: tuple[Any, ...], keep: bool, borrowed: list[np.ndarray[Any, Any]] | None
) -> Any:
    from snakepit.zero_copy import _cuda_leases
    from snakepit.zero_copy._cuda import GPUTensorRef

    if len(fields) != 5 or fields[0] != TAG or type(fields[1]) is not bool:
        raise InvalidDescriptorError(f"malformed CUDA descriptor {fields[:2]!r}")
    _, transferred, values, library, token_fields = fields
    if library not in LIBRARIES or type(values) is not tuple or type(token_fields) is not tuple:
        raise InvalidDescriptorError(f"malformed CUDA descriptor for library {library!r}")
    if len(values) != len(_fields()):
        raise InvalidDescriptorError(
            f"a GPUTensorRef has {len(_fields())} fields, not {len(values)}"
        )
    ref = GPUTensorRef(*values)
    ref.validate()
    mode: RefMode = "adopt" if transferred else "acquire" if keep else "borrow"
    token = array_from_fields(token_fields, mode)
    if not transferred and not keep and borrowed is not None:
        # The caller keeps the tensor for the call; a worker that keeps the
        # view past it takes a reference of its own on the token.
        borrowed.append(token)
    if len(token_fields) == 8:
        mine = _cuda_leases.exported(token_fields[0], token_fields[2])
        if mine is not None:
            # Our own memory, back: CUDA refuses to open our own handle.
            return _own(*mine, ref, library)
    view = _cuda_leases.open_view(ref, token)
    return _rebuilt(view, library)


def _own(obj: Any, exported: GPUTensorRef | None, ptr: int, ref: GPUTensorRef, library: str) -> Any:
    """The object for ``ref``, a view of memory this process exported as ``exported``."""
    if exported is None or (ref.offset, ref.shape, ref.strides, ref.dtype) == (
        exported.offset,
        exported.shape,
        exported.strides,
        exported.dtype,
    ):
        return obj  # the very tensor we sent
    delta = ref.offset - exported.offset
    torch = sys.modules.get("torch")
    if library == "torch" and torch is not None and ref.dtype == exported.dtype:
        size = obj.element_size()
        if delta % size == 0 and all(stride % size == 0 for stride in ref.strides):
            steps = [stride // size for stride in ref.strides]
            return obj.as_strided(ref.shape, steps, obj.storage_offset() + delta // size)
    return LocalCudaView(obj, ptr + delta, ref)


class LocalCudaView:
    """A view of CUDA memory this process owns, sent back by a peer in
    another shape: ``__cuda_array_interface__`` v3 over it, holding its owner."""

    __slots__ = ("owner", "ptr", "ref")

    def __init__(self, owner: Any, ptr: int, ref: GPUTensorRef) -> None:
        self.owner = owner
        self.ptr = ptr
        self.ref = ref

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        import numpy as np

        dtype = np.dtype(self.ref.dtype if self.ref.dtype != "bfloat16" else "<V2")
        return {
            "shape": self.ref.shape,
            "typestr": dtype.str,
            "data": (self.ptr, False),
            "strides": self.ref.strides,
            "version": 3,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        from snakepit.zero_copy._cuda import DLPACK_CUDA

        return (DLPACK_CUDA, self.ref.device_id)


def _rebuilt(view: CudaIPCTensor, library: str) -> Any:
    """``view`` as a tensor of ``library`` on the same memory (the view itself
    where that library is not installed)."""
    if library == "cuda":
        return view
    try:
        module = sys.modules.get(library) or importlib.import_module(library)
    except ImportError:
        return view
    device = view.__dlpack_device__()[1]
    if library == "torch":
        if callable(getattr(view, "__dlpack__", None)):
            return module.from_dlpack(view)
        # Over __cuda_array_interface__: torch keeps `view` alive with its storage.
        return module.as_tensor(view, device=f"cuda:{device}")
    with module.cuda.Device(device):
        return module.asarray(view)  # CuPy keeps `view` as the memory's owner
