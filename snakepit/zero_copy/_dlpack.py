"""DLPack: export TensorRefs to any consumer, import any producer (SPEC §1.3).

The C core builds the DLPack structures (``sp_dlpack_export``); this module
holds the protocol policy: which capsule to produce, what to refuse, and how
foreign tensors enter shared memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snakepit.errors import InvalidDescriptorError

from ._errors import core_errors
from ._memory import _attach, from_ref, is_shared, share
from ._ref import TensorRef

#: DLDeviceType of host memory (kDLCPU).
DL_CPU = 1

#: snakepit dtype name -> (DLDataTypeCode, bits); lanes are always 1.
DL_DTYPES: dict[str, tuple[int, int]] = {
    "bool": (6, 8),
    "int8": (0, 8),
    "int16": (0, 16),
    "int32": (0, 32),
    "int64": (0, 64),
    "uint8": (1, 8),
    "uint16": (1, 16),
    "uint32": (1, 32),
    "uint64": (1, 64),
    "float16": (2, 16),
    "bfloat16": (4, 16),
    "float32": (2, 32),
    "float64": (2, 64),
    "complex64": (5, 64),
    "complex128": (5, 128),
}


def dlpack_device(ref: TensorRef) -> tuple[int, int]:
    """``(device_type, device_id)`` of a TensorRef: host memory, ``(1, 0)``."""
    if ref.device != "cpu":
        raise BufferError(f"TensorRef on device {ref.device!r} cannot be exported by DLPack")
    return (DL_CPU, 0)


def dlpack_capsule(
    ref: TensorRef,
    *,
    stream: Any = None,
    max_version: tuple[int, int] | None = None,
    dl_device: tuple[int, int] | None = None,
    copy: bool | None = None,
    readonly: bool = False,
) -> Any:
    """The ``__dlpack__`` of a TensorRef: a capsule viewing its block, no copy.

    A versioned capsule (``"dltensor_versioned"``) when ``max_version[0] >= 1``,
    else a legacy one (``"dltensor"``). ``readonly`` sets the READ_ONLY flag
    (versioned only: the legacy struct cannot carry it, so that is refused).
    The tensor holds one reference on the block until its consumer deletes
    it, or until the capsule dies unconsumed.
    """
    if stream is not None:
        raise BufferError(f"stream must be None for a CPU tensor, got {stream!r}")
    if dl_device is not None and tuple(dl_device) != (DL_CPU, 0):
        raise BufferError(f"TensorRef lives on the CPU (1, 0); cannot export to {dl_device!r}")
    if copy:
        raise BufferError(
            "TensorRef exports only zero-copy views (copy=True is not supported); "
            "copy the consumer's tensor instead"
        )
    versioned = max_version is not None and int(max_version[0]) >= 1
    if readonly and not versioned:
        raise BufferError(
            "cannot export a read-only view through the legacy DLPack struct "
            "(it has no read-only flag); ask for max_version >= (1, 0)"
        )
    ref.validate()
    if any(stride < 0 for stride in ref.strides):
        # DLPack allows them, but torch aborts the whole process on them.
        raise BufferError(
            f"cannot export a view with negative strides {ref.strides} by DLPack "
            "(torch would abort); share a copy: snakepit.share(array.copy())"
        )
    if ref.region_size == 0:
        raise InvalidDescriptorError(f"TensorRef for {ref.region!r} lacks region_size")
    code, bits = DL_DTYPES[ref.dtype]
    with core_errors("export TensorRef by DLPack", name=ref.region):
        region = _attach(ref.region, ref.region_size)
        return region.dlpack(
            ref.offset,
            ref.nbytes,
            ref.byte_offset,
            ref.shape,
            ref.strides,
            code,
            bits,
            versioned,
            readonly,
        )


def from_dlpack(obj: Any) -> np.ndarray[Any, Any]:
    """A numpy array in snakepit shared memory holding ``obj``'s data.

    A :class:`TensorRef` or an array already in snakepit shared memory gives
    a zero-copy view. Any other DLPack producer (a torch CPU tensor, a numpy
    array, ...) is taken with ``numpy.from_dlpack`` and copied **once** into
    shared memory with :func:`snakepit.share`, so that it can then travel to
    workers without further copies.
    """
    if isinstance(obj, TensorRef):
        return from_ref(obj)
    if isinstance(obj, np.ndarray) and is_shared(obj):
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"{type(obj).__name__} is not a DLPack producer (no __dlpack__)")
    return share(np.from_dlpack(obj))
