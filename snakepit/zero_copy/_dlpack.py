"""DLPack export of shared-memory blocks (see docs/zero-copy.md).

The C core builds the DLPack structures (``sp_dlpack_export``); this module
holds the protocol policy: which capsule to produce and what to refuse. It
speaks in plain fields: :class:`~._ref.TensorRef` calls it.
"""

from __future__ import annotations

from typing import Any

from ._errors import core_errors
from ._mapping import attach

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


def dlpack_device(device: str) -> tuple[int, int]:
    """``(device_type, device_id)`` of a block on ``device``: host memory, ``(1, 0)``."""
    if device != "cpu":
        raise BufferError(f"TensorRef on device {device!r} cannot be exported by DLPack")
    return (DL_CPU, 0)


def dlpack_capsule(
    region_name: str,
    region_size: int,
    offset: int,
    nbytes: int,
    byte_offset: int,
    shape: tuple[int, ...],
    dtype: str,
    strides: tuple[int, ...],
    *,
    stream: Any = None,
    max_version: tuple[int, int] | None = None,
    dl_device: tuple[int, int] | None = None,
    copy: bool | None = None,
    readonly: bool = False,
) -> Any:
    """A capsule viewing a validated block, no copy (the ``__dlpack__`` of a TensorRef).

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
    if any(stride < 0 for stride in strides):
        # DLPack allows them, but torch aborts the whole process on them.
        raise BufferError(
            f"cannot export a view with negative strides {strides} by DLPack "
            "(torch would abort); share a copy: snakepit.share(array.copy())"
        )
    code, bits = DL_DTYPES[dtype]
    with core_errors("export TensorRef by DLPack", name=region_name):
        region = attach(region_name, region_size)
        return region.dlpack(
            offset, nbytes, byte_offset, shape, strides, code, bits, versioned, readonly
        )
