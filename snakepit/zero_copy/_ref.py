"""TensorRef: the small, immutable descriptor of an array in shared memory."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from snakepit.errors import InvalidDescriptorError

from ._dtypes import SUPPORTED_DTYPES, numpy_dtype

#: Refuse descriptors with more dimensions than numpy supports.
MAX_NDIM = 64
#: No size, offset or stride may reach this: it keeps every value inside the
#: C core's 64-bit arithmetic and far above any real region (2**46 bytes).
MAX_FIELD = 1 << 62


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
    if any(type(d) is not int or not 0 <= d < MAX_FIELD for d in shape):
        return f"shape {shape!r} must hold ints in [0, 2**62)"
    if any(type(s) is not int or abs(s) >= MAX_FIELD for s in strides):
        return f"strides {strides!r} must hold ints in (-2**62, 2**62)"
    # numpy refuses shapes whose non-zero dimensions multiply past its index
    # range, even when another dimension is 0: check before it is asked.
    itemsize = numpy_dtype(dtype).itemsize
    if math.prod(max(d, 1) for d in shape) * itemsize >= MAX_FIELD:
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


@dataclass(frozen=True, slots=True)
class TensorRef:
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

    def validate(self) -> None:
        """Check the descriptor is self-consistent; InvalidDescriptorError if not.

        This is the Python half of validation: the C core then checks the
        region's name, header and block against what is really mapped.
        """
        problem = self._problem()
        if problem is not None:
            raise InvalidDescriptorError(
                f"malformed TensorRef for region {self.region!r}: {problem}"
            )

    def _problem(self) -> str | None:
        for field in ("offset", "nbytes", "byte_offset", "region_size"):
            value = getattr(self, field)
            if type(value) is not int or not 0 <= value < MAX_FIELD:
                return f"{field} must be an int in [0, 2**62), got {value!r}"
        region: object = self.region
        ident: object = self.id
        if not isinstance(region, str) or not isinstance(ident, str):
            return "region and id must be str"
        if self.device != "cpu":
            return f"device {self.device!r} is not a shared-memory device"
        problem = layout_problem(self.dtype, self.shape, self.strides)
        if problem is not None:
            return problem
        low, high = self.extent()
        logical = self.size * numpy_dtype(self.dtype).itemsize
        if logical > self.nbytes:
            # Only overlapping strides (0 among them) view more elements than
            # the block holds; no array snakepit shares has them.
            return (
                f"view of {logical} bytes (shape {self.shape}, strides {self.strides}) "
                f"over a block of {self.nbytes} bytes"
            )
        if low < 0 or high > self.nbytes:
            return (
                f"view spans bytes [{low}, {high}) of a block of {self.nbytes} bytes "
                f"(shape {self.shape}, strides {self.strides}, byte_offset {self.byte_offset})"
            )
        return None

    def extent(self) -> tuple[int, int]:
        """Bytes ``[low, high)`` of the block that the view touches."""
        return view_extent(self.dtype, self.shape, self.strides, self.byte_offset)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def release(self) -> None:
        """Drop the reference this process holds on the block, if any.

        Arrays viewing the block must not be used afterwards.
        """
        from ._memory import release_ref

        release_ref(self)

    def __enter__(self) -> TensorRef:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

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
        block for as long as its consumer lives. ``stream`` must be None,
        ``dl_device`` the CPU, and ``copy=True`` is refused (BufferError).
        """
        from ._dlpack import dlpack_capsule

        return dlpack_capsule(
            self, stream=stream, max_version=max_version, dl_device=dl_device, copy=copy
        )

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(1, 0)``: the tensor is in host memory (kDLCPU)."""
        from ._dlpack import dlpack_device

        return dlpack_device(self)

    def to_numpy(self) -> Any:
        """A numpy view of the block (same as ``snakepit.from_ref(self)``)."""
        from ._memory import from_ref

        return from_ref(self)
