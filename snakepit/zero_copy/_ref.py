"""Descriptors: small, immutable, picklable names of memory another process can open.

:class:`Descriptor` is the base of every kind (:class:`TensorRef` here,
``ArrowRef`` and ``GPUTensorRef`` in their carriers): validation of fields
that come from another process, and a context manager that releases what
this process holds. :class:`TensorRef` and the functions below name numpy
arrays in shared memory; they call down into ``_mapping`` (and ``_dlpack``),
which know no descriptor class.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit import _core
from snakepit.errors import DtypeError, InvalidDescriptorError, SharedMemoryError

from . import _dlpack, _mapping
from ._dtypes import SUPPORTED_DTYPES, dtype_name, numpy_dtype
from ._mapping import RefMode

#: Refuse descriptors with more dimensions than numpy supports.
MAX_NDIM = 64
#: No size, offset or stride may reach this: it keeps every value inside the
#: C core's 64-bit arithmetic and far above any real region (2**46 bytes).
MAX_FIELD = 1 << 62
_INT = frozenset({int})


def layout_problem(dtype: object, shape: object, strides: object) -> str | None:
    """What is wrong with a descriptor's dtype, shape and strides, or None.

    Shared by every descriptor (shared memory, CUDA IPC): these fields come
    from another process and are checked before any arithmetic on them.
    """
    if dtype not in SUPPORTED_DTYPES:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, tuple) or not isinstance(strides, tuple):
        return "shape and strides must be tuples"
    if len(shape) > MAX_NDIM or len(shape) != len(strides):
        return f"shape {shape!r} and strides {strides!r} disagree"
    # Set and min/max over the tuples: C speed, this runs for every array received.
    if shape and (not set(map(type, shape)) <= _INT or min(shape) < 0 or max(shape) >= MAX_FIELD):
        return f"shape {shape!r} must hold ints in [0, 2**62)"
    if strides and (
        not set(map(type, strides)) <= _INT
        or min(strides) <= -MAX_FIELD
        or max(strides) >= MAX_FIELD
    ):
        return f"strides {strides!r} must hold ints in (-2**62, 2**62)"
    # numpy refuses shapes whose non-zero dimensions multiply past its index
    # range, even when another dimension is 0: check before it is asked.
    itemsize = numpy_dtype(dtype).itemsize
    elements = math.prod(shape) if 0 not in shape else math.prod([d for d in shape if d])
    if elements * itemsize >= MAX_FIELD:
        return f"shape {shape!r} describes more than 2**62 bytes"
    return None


def view_extent(
    dtype: str, shape: tuple[int, ...], strides: tuple[int, ...], start: int
) -> tuple[int, int]:
    """Bytes ``[low, high)`` a strided view starting at byte ``start`` touches."""
    if math.prod(shape) == 0:
        return (start, start)
    low = high = start
    for dim, stride in zip(shape, strides, strict=True):
        span = (dim - 1) * stride
        if span < 0:
            low += span
        else:
            high += span
    return (low, high + numpy_dtype(dtype).itemsize)


def view_problem(
    region: object,
    region_size: object,
    offset: object,
    nbytes: Any,
    byte_offset: Any,
    dtype: Any,
    shape: Any,
    strides: Any,
) -> str | None:
    """What is wrong with the fields of a view of a shared block, or None.

    The fields of a :class:`TensorRef` (and of the codec's flat descriptors),
    which come from another process: checked before any arithmetic on them.
    """
    fields = (offset, nbytes, byte_offset, region_size)
    if not set(map(type, fields)) <= _INT or min(fields) < 0 or max(fields) >= MAX_FIELD:
        names = ("offset", "nbytes", "byte_offset", "region_size")
        for name, value in zip(names, fields, strict=True):
            if type(value) is not int or not 0 <= value < MAX_FIELD:
                return f"{name} must be an int in [0, 2**62), got {value!r}"
    if not isinstance(region, str):
        return "region and id must be str"
    problem = layout_problem(dtype, shape, strides)
    if problem is not None:
        return problem
    low, high = view_extent(dtype, shape, strides, byte_offset)
    logical = math.prod(shape) * numpy_dtype(dtype).itemsize
    if logical > nbytes:
        # Only overlapping strides (0 among them) view more elements than
        # the block holds; no array snakepit shares has them.
        return (
            f"view of {logical} bytes (shape {shape}, strides {strides}) "
            f"over a block of {nbytes} bytes"
        )
    if low < 0 or high > nbytes:
        return (
            f"view spans bytes [{low}, {high}) of a block of {nbytes} bytes "
            f"(shape {shape}, strides {strides}, byte_offset {byte_offset})"
        )
    return None


class Descriptor:
    """What every descriptor shares: validation and a ``with`` block that releases it.

    Subclasses are frozen slotted dataclasses; they define ``_problem()``
    (what is wrong with their fields, or None) and ``_where()`` (which memory
    they name, for messages), and ``release()`` when this process can hold
    something for them.
    """

    __slots__ = ()

    def _problem(self) -> str | None:
        raise NotImplementedError

    def _where(self) -> str:
        return ""

    def validate(self) -> None:
        """Check the descriptor is self-consistent; InvalidDescriptorError if not.

        This is the Python half of validation: the C core then checks what is
        really mapped (a region's name, header and block; a CUDA handle).
        """
        problem = self._problem()
        if problem is not None:
            raise InvalidDescriptorError(
                f"malformed {type(self).__name__}{self._where()}: {problem}", reason=problem
            )

    def release(self) -> None:
        """Drop what this process holds for the descriptor (nothing by default)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class StridedDescriptor(Descriptor):
    """A descriptor of a strided view: ``dtype``, ``shape``, ``strides`` in bytes,
    and where element ``[0, ..., 0]`` lies (``_start()``)."""

    __slots__ = ()
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def _start(self) -> int:
        raise NotImplementedError

    def extent(self) -> tuple[int, int]:
        """Bytes ``[low, high)`` of the block (or allocation) that the view touches."""
        return view_extent(self.dtype, self.shape, self.strides, self._start())

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class TensorRef(StridedDescriptor):
    """Where an array lives in shared memory and how to view it.

    ``region`` and ``offset`` name the block (its data starts ``offset`` bytes
    into the region, ``nbytes`` long); ``byte_offset`` is where element
    ``[0, ..., 0]`` sits inside the block and ``strides`` are in bytes, so
    non-contiguous views of a shared array travel without a copy.
    """

    id: str
    shape: tuple[int, ...]
    dtype: str
    strides: tuple[int, ...]
    offset: int
    region: str
    nbytes: int
    device: str = "cpu"
    byte_offset: int = 0
    region_size: int = 0

    def __reduce__(self) -> tuple[type[TensorRef], tuple[object, ...]]:
        # Positional fields: smaller and much faster than the dataclass default
        # (descriptors are pickled on every call that passes an array).
        return (
            TensorRef,
            (
                self.id,
                self.shape,
                self.dtype,
                self.strides,
                self.offset,
                self.region,
                self.nbytes,
                self.device,
                self.byte_offset,
                self.region_size,
            ),
        )

    def _where(self) -> str:
        return f" for region {self.region!r}"

    def _start(self) -> int:
        return self.byte_offset

    def _problem(self) -> str | None:
        problem = view_problem(
            self.region,
            self.region_size,
            self.offset,
            self.nbytes,
            self.byte_offset,
            self.dtype,
            self.shape,
            self.strides,
        )
        if problem is not None:
            return problem
        ident: object = self.id
        if not isinstance(ident, str):
            return "region and id must be str"
        if self.device != "cpu":
            return f"device {self.device!r} is not a shared-memory device"
        return None

    def release(self) -> None:
        """Drop the reference this process holds on the block, if any.

        Arrays viewing the block must not be used afterwards.
        """
        _mapping.release_held(self.region, self.offset)

    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule viewing the block without a copy (CPU only).

        Versioned (``"dltensor_versioned"``) when ``max_version[0] >= 1``,
        legacy (``"dltensor"``) otherwise. The tensor holds a reference on the
        block for as long as its consumer lives. ``stream`` must be None and
        ``dl_device`` the CPU (else BufferError); ``copy=True`` hands the
        consumer a private copy (IS_COPIED), ``copy=False`` never copies.
        """
        return dlpack_capsule(
            self, stream=stream, max_version=max_version, dl_device=dl_device, copy=copy
        )

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(1, 0)``: the tensor is in host memory (kDLCPU)."""
        return _dlpack.dlpack_device(self.device)

    def to_numpy(self) -> Any:
        """A numpy view of the block (same as ``snakepit.from_ref(self)``)."""
        return array_from_ref(self)


def _checked(ref: TensorRef) -> TensorRef:
    ref.validate()
    if ref.region_size == 0:
        raise InvalidDescriptorError(f"TensorRef for {ref.region!r} lacks region_size")
    return ref


def dlpack_capsule(ref: TensorRef, *, readonly: bool = False, **protocol: Any) -> Any:
    """``ref.__dlpack__(**protocol)``, optionally READ_ONLY (see ``_dlpack.dlpack_capsule``).

    ``copy=True`` exports a private copy of the view (IS_COPIED, writable).
    """
    import numpy as np

    _checked(ref)
    if protocol.get("copy"):
        if protocol.get("stream") is not None:
            raise BufferError(f"stream must be None for a CPU tensor, got {protocol['stream']!r}")
        dl_device = protocol.get("dl_device")
        if dl_device is not None and tuple(dl_device) != (_dlpack.DL_CPU, 0):
            raise BufferError(f"TensorRef lives on the CPU (1, 0); cannot export to {dl_device!r}")
        private = np.array(array_from_ref(ref), copy=True)
        return _dlpack.host_copy_capsule(private, protocol.get("max_version"))
    return _dlpack.dlpack_capsule(
        ref.region,
        ref.region_size,
        ref.offset,
        ref.nbytes,
        ref.byte_offset,
        ref.shape,
        ref.dtype,
        ref.strides,
        readonly=readonly,
        **protocol,
    )


def array_from_ref(
    ref: TensorRef, *, mode: RefMode = "acquire", readonly: bool = False
) -> np.ndarray[Any, Any]:
    """A numpy view of the memory ``ref`` describes, without copying.

    ``mode``: ``"acquire"`` takes a reference on the block that the returned
    array holds until it dies; ``"borrow"`` takes none (the sender keeps the
    block alive, as the pool does for call arguments); ``"adopt"`` takes over a
    reference the sender already added for us (results in transit).
    """
    if not isinstance(ref, TensorRef):
        raise InvalidDescriptorError(f"expected a TensorRef, got {type(ref).__name__}")
    ref.validate()
    if ref.region_size == 0:
        raise InvalidDescriptorError(f"TensorRef for {ref.region!r} lacks region_size")
    return _mapping.view(
        ref.region,
        ref.region_size,
        ref.offset,
        ref.nbytes,
        ref.byte_offset,
        ref.shape,
        ref.dtype,
        ref.strides,
        mode,
        readonly,
        "attach TensorRef",
    )


def describe(array: np.ndarray[Any, Any]) -> TensorRef | None:
    """The TensorRef of a shared array, or None if it is not in shared memory.

    Unlike :func:`tensor_ref_of` it registers nothing: this is the codec's hot
    path. None too for an array whose region was unlinked (see ``share``).
    """
    buffer = _mapping.sendable_buffer(array)
    return None if buffer is None else _describe(array, buffer)


def _describe(array: np.ndarray[Any, Any], buffer: _core.SharedBuffer) -> TensorRef:
    region = buffer.region_name
    offset = buffer.data_offset
    return TensorRef(
        id=f"{region}:{offset}",
        shape=array.shape,
        dtype=_cached_dtype_name(array.dtype),
        strides=array.strides,
        offset=offset,
        region=region,
        nbytes=buffer.nbytes,
        byte_offset=_byte_offset(array, buffer),
        region_size=buffer.region_size,
    )


#: The fields of a view of a shared block, flat: region, region_size, offset
#: and nbytes name the block; byte_offset, dtype, shape and strides the view.
#: The codec sends them as they are (no descriptor object, nothing nested
#: but shape and strides); :func:`array_from_fields` validates them.
Fields = tuple[str, int, int, int, int, str, tuple[int, ...], tuple[int, ...]]

# dtype -> name for the dtypes arrays are usually made of: dtype_name()
# reads several numpy properties, each a Python-level call. Only plain
# native dtypes without metadata are kept (bfloat16 compares equal to V2).
_dtype_names: dict[np.dtype[Any], str] = {}


def _cached_dtype_name(dtype: np.dtype[Any]) -> str:
    name = _dtype_names.get(dtype)
    if name is None:
        name = dtype_name(dtype)
        if dtype.metadata is None and name != "bfloat16" and len(_dtype_names) < 64:
            _dtype_names[dtype] = name
    return name


# id(array) -> (weak reference to it, its data's offset in its buffer).
# ``__array_interface__`` builds a dict of several entries (microseconds);
# an array's data pointer and base never change, so arrays sent again (a
# shared input passed to every call) skip it. Bounded: cleared when full.
_byte_offsets: dict[int, tuple[weakref.ref[np.ndarray[Any, Any]], int]] = {}
_MAX_CACHED = 4096


def _byte_offset(array: np.ndarray[Any, Any], buffer: _core.SharedBuffer) -> int:
    key = id(array)
    entry = _byte_offsets.get(key)
    if entry is not None and entry[0]() is array:
        return entry[1]
    offset: int = array.__array_interface__["data"][0] - buffer.address
    if len(_byte_offsets) >= _MAX_CACHED:
        _byte_offsets.clear()
    _byte_offsets[key] = (weakref.ref(array), offset)
    return offset


def fields_of(array: np.ndarray[Any, Any]) -> Fields | None:
    """The :data:`Fields` of a shared array, or None if it is not in shared
    memory (or its region was unlinked). DtypeError for a dtype that cannot
    be shared. Registers nothing: the codec's hot path."""
    buffer = _mapping.sendable_buffer(array)
    if buffer is None:
        return None
    return (
        buffer.region_name,
        buffer.region_size,
        buffer.data_offset,
        buffer.nbytes,
        _byte_offset(array, buffer),
        _cached_dtype_name(array.dtype),
        array.shape,
        array.strides,
    )


# Fields already validated: a block received again (the same shared input
# on every call) is not checked again. Values that merely compare equal to
# checked ones (1.0 for 1, True for 1) are told apart by their types.
_validated: set[tuple[Any, ...]] = set()
_FIELD_TYPES = (str, int, int, int, int, str, tuple, tuple)


def checked_fields(fields: tuple[Any, ...]) -> Fields:
    """``fields`` from another process if they describe a valid view of a
    block; InvalidDescriptorError if not."""
    if len(fields) != 8:
        raise InvalidDescriptorError(f"a block descriptor has 8 fields, not {len(fields)}")
    problem = view_problem(*fields)
    if problem is None and fields[1] == 0:
        problem = "region_size must not be 0"
    if problem is not None:
        raise InvalidDescriptorError(
            f"malformed block descriptor for region {fields[0]!r}: {problem}", reason=problem
        )
    return fields


def _known_fields(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        known = fields in _validated
    except TypeError:  # unhashable: not fields we made; the checks say why
        known = False
    if (
        known
        and tuple(map(type, fields)) == _FIELD_TYPES
        and set(map(type, fields[6] + fields[7])) <= _INT
    ):
        return fields
    checked_fields(fields)
    if len(_validated) >= _MAX_CACHED:
        _validated.clear()
    _validated.add(fields)
    return fields


def array_from_fields(fields: tuple[Any, ...], mode: RefMode) -> np.ndarray[Any, Any]:
    """The array that :data:`Fields` from another process describe (checked
    first: InvalidDescriptorError if they are malformed), as ``array_from_ref``."""
    return view_of_fields(_known_fields(fields), mode)


def view_of_fields(fields: tuple[Any, ...], mode: RefMode) -> np.ndarray[Any, Any]:
    """The array that checked :data:`Fields` describe."""
    region, region_size, offset, nbytes, byte_offset, dtype, shape, strides = fields
    return _mapping.view(
        region,
        region_size,
        offset,
        nbytes,
        byte_offset,
        shape,
        dtype,
        strides,
        mode,
        False,
        "attach block",
    )


#: Fields of a small array whose data travels with them (see ``_wire/_flat.py``).
InlineFields = tuple[str, tuple[int, ...], bytes | bytearray]


def inline_fields_of(array: np.ndarray[Any, Any], most_bytes: int) -> InlineFields | None:
    """A C-contiguous array of a shareable dtype below ``most_bytes``: its
    dtype name, shape and a copy of its data (``bytearray`` if the array is
    writable, as pickle gives it back); None for any other array."""
    if array.nbytes >= most_bytes or not array.flags.c_contiguous:
        return None
    try:
        name = _cached_dtype_name(array.dtype)
    except DtypeError:
        return None
    data = bytearray(array.data) if array.flags.writeable else array.tobytes()
    return name, array.shape, data


def array_from_inline(fields: tuple[Any, ...]) -> np.ndarray[Any, Any]:
    """The array that :data:`InlineFields` from another process describe,
    over their data (checked first: InvalidDescriptorError if malformed)."""
    import numpy as np

    if len(fields) != 3:
        raise InvalidDescriptorError(f"malformed inline array {fields!r:.200}")
    dtype, shape, data = fields
    problem = layout_problem(dtype, shape, shape)  # strides: any ints, checked as shape
    if problem is None and type(data) is not bytes and type(data) is not bytearray:
        problem = f"inline data of type {type(data).__name__}"
    if problem is None and len(data) != math.prod(shape) * numpy_dtype(dtype).itemsize:
        problem = f"{len(data)} bytes of data for shape {shape!r} of {dtype}"
    if problem is not None:
        raise InvalidDescriptorError(f"invalid inline array: {problem}")
    return np.frombuffer(data, dtype=numpy_dtype(dtype)).reshape(shape)


def tensor_ref_of(array: np.ndarray[Any, Any]) -> TensorRef:
    """The TensorRef of an array that lives in snakepit shared memory."""
    import numpy as np

    if not isinstance(array, np.ndarray):
        raise TypeError(f"ref_of() needs a numpy array, not {type(array).__name__}")
    buffer = _mapping.shared_buffer(array)
    if buffer is None:
        raise SharedMemoryError(
            "array is not in snakepit shared memory; use snakepit.share(array) first"
        )
    # Lets ref.release() find the reference this process holds.
    _mapping.hold(buffer)
    return _describe(array, buffer)


def take_transfer_ref(array: np.ndarray[Any, Any]) -> TensorRef:
    """tensor_ref_of(array) plus one reference for a receiver to adopt."""
    ref = tensor_ref_of(array)
    _mapping.add_ref(ref.region, ref.region_size, ref.offset)
    return ref


def drop_transfer_ref(ref: TensorRef) -> None:
    """Drop a transfer reference that no receiver will adopt."""
    _mapping.drop_ref(ref.region, ref.region_size, ref.offset)


def release_ref(ref: TensorRef) -> None:
    """Drop the reference this process holds on ``ref``'s block (if any)."""
    _mapping.release_held(ref.region, ref.offset)


def block_refcount(ref: TensorRef) -> int:
    """The block's reference count across all processes (for diagnostics)."""
    return _mapping.block_refcount(ref.region, ref.region_size, ref.offset, ref.nbytes)
