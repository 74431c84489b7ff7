"""DLPack export of shared-memory blocks and of device memory (see docs/zero-copy.md).

The C core builds the DLPack structures (``sp_dlpack_export`` for blocks;
``owned_dlpack`` in the Cython layer for memory a Python object keeps alive);
this module holds the protocol policy: which capsule to produce and what to
refuse. It speaks in plain fields: :class:`~._ref.TensorRef`,
``CudaIPCTensor`` and ``CudaArray`` call it.

Every export honours the keyword arguments of ``__dlpack__`` as the DLPack
Python specification (and numpy) read them:

* ``max_version``: a versioned capsule (``"dltensor_versioned"``, DLPack 1.1)
  when ``max_version[0] >= 1``, else a legacy one (``"dltensor"``);
* ``dl_device``: None or the tensor's own device, else BufferError (nothing is
  moved between devices);
* ``copy``: ``True`` always copies (IS_COPIED set on versioned capsules; the
  copy is the consumer's alone, so it is writable), ``False`` and ``None``
  never do;
* read-only views set READ_ONLY, which the legacy struct cannot carry: such a
  legacy export is refused (BufferError) rather than handed out writable;
* ``stream``: None for host memory; for CUDA memory None or a stream handle
  (``0`` is refused as ambiguous, as the specification says). The data of
  an opened IPC tensor is complete when it arrives (its producer synchronised),
  so no wait is queued on the consumer's stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit._core import owned_dlpack

from ._dtypes import dtype_name
from ._errors import core_errors
from ._mapping import attach

#: DLDeviceType of host memory (kDLCPU) and of CUDA device memory (kDLCUDA).
DL_CPU = 1
DL_CUDA = 2

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


#: (DLDataTypeCode, bits) -> snakepit dtype name.
DL_DTYPE_NAMES: dict[tuple[int, int], str] = {v: k for k, v in DL_DTYPES.items()}

#: What a device copy returns: the object keeping the copy alive, the pointer
#: of element ``[0, ..., 0]`` in it, and its strides in bytes.
DeviceCopier = Callable[[], tuple[object, int, tuple[int, ...]]]


def wants_versioned(max_version: Any) -> bool:
    """Whether a consumer's ``max_version`` asks for the versioned struct."""
    return max_version is not None and int(max_version[0]) >= 1


def dtype_of(code: int, bits: int, lanes: int) -> str:
    """The snakepit dtype name of a DLDataType, or BufferError."""
    name = DL_DTYPE_NAMES.get((code, bits))
    if lanes != 1 or name is None:
        raise BufferError(
            f"DLPack dtype (code {code}, {bits} bits, {lanes} lanes) has no snakepit dtype"
        )
    return name


def element_strides(
    strides: tuple[int, ...], shape: tuple[int, ...], itemsize: int
) -> tuple[int, ...]:
    """Byte strides as DLPack's element strides, or BufferError where they do not divide."""
    out = []
    for stride, dim in zip(strides, shape, strict=True):
        if stride % itemsize and dim > 1:
            raise BufferError(f"stride {stride} is not a multiple of the item size {itemsize}")
        out.append(stride // itemsize)
    return tuple(out)


def host_copy_capsule(array: np.ndarray[Any, Any], max_version: Any) -> Any:
    """A capsule owning ``array`` (a private copy: IS_COPIED on versioned capsules)."""
    name = dtype_name(array.dtype)
    code, bits = DL_DTYPES[name]
    versioned = wants_versioned(max_version)
    strides = element_strides(tuple(array.strides), array.shape, array.itemsize)
    return owned_dlpack(
        array,
        array.ctypes.data,
        DL_CPU,
        0,
        array.shape,
        strides,
        code,
        bits,
        versioned,
        False,
        versioned,
    )


def device_capsule(
    owner: object,
    ptr: int,
    device_id: int,
    shape: tuple[int, ...],
    dtype: str,
    strides: tuple[int, ...],
    *,
    readonly: bool,
    copier: DeviceCopier,
    stream: Any = None,
    max_version: Any = None,
    dl_device: Any = None,
    copy: bool | None = None,
) -> Any:
    """A capsule over CUDA memory at ``ptr`` that ``owner`` keeps mapped (``__dlpack__``).

    ``strides`` are in bytes. ``copy=True`` calls ``copier`` for a private
    copy, which the capsule then owns. See the module docstring for the rules.
    """
    if stream is not None and (type(stream) is not int or stream == 0 or stream < -1):
        raise BufferError(
            f"stream must be None, -1 or a CUDA stream handle (0 is ambiguous), got {stream!r}"
        )
    if dl_device is not None and tuple(dl_device) != (DL_CUDA, device_id):
        raise BufferError(
            f"the tensor lives on CUDA device {(DL_CUDA, device_id)}; cannot export it to "
            f"{tuple(dl_device)!r} (move it with the consumer's library instead)"
        )
    versioned = wants_versioned(max_version)
    copied = bool(copy)
    if copied:
        owner, ptr, strides = copier()
        readonly = False
    if readonly and not versioned:
        raise BufferError(
            "cannot export a read-only view through the legacy DLPack struct "
            "(it has no read-only flag); ask for max_version >= (1, 0)"
        )
    if any(stride < 0 for stride in strides):
        raise BufferError(
            f"cannot export a view with negative strides {strides} by DLPack (torch would abort)"
        )
    code, bits = DL_DTYPES[dtype]
    elements = element_strides(strides, shape, bits // 8)
    return owned_dlpack(
        owner,
        ptr,
        DL_CUDA,
        device_id,
        shape,
        elements,
        code,
        bits,
        versioned,
        readonly,
        copied and versioned,
    )


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
    it, or until the capsule dies unconsumed. ``copy=True`` is the caller's
    to serve (``_ref.dlpack_capsule`` copies into a private array); here it
    is refused.
    """
    if stream is not None:
        raise BufferError(f"stream must be None for a CPU tensor, got {stream!r}")
    if dl_device is not None and tuple(dl_device) != (DL_CPU, 0):
        raise BufferError(f"TensorRef lives on the CPU (1, 0); cannot export to {dl_device!r}")
    if copy:
        raise BufferError("dlpack_capsule() exports zero-copy views only")
    versioned = wants_versioned(max_version)
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
