"""The one translation of C-core status codes into snakepit's exceptions.

Every call into :mod:`snakepit._core` that can fail raises ``CoreError``
carrying an ``sp_status`` code (:class:`snakepit._core.Status`, declared once
in ``includes/core.pxd`` from ``csrc/snakepit_core.h``). This module is the
only place that turns those codes into the public hierarchy, as pyarrow's
``check_status`` and uvloop's ``convert_error`` do:

* cold paths wrap the calls in a ``with`` block::

      with core_errors("read refcount", name=ref.region):
          return region.block_refcount(ref.offset, ref.nbytes)

* hot paths (one call per array sent or received) catch ``CoreError``
  themselves and raise :func:`core_error`, so a call that succeeds costs no
  context manager::

      except CoreError as exc:
          raise core_error(exc, "attach TensorRef", name=ref.region) from None
"""

from __future__ import annotations

import os
from types import TracebackType

from snakepit._core import CUDA_ERROR_INVALID_CONTEXT, CoreError, Status
from snakepit._util import format_bytes
from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
    UnshareableMemoryError,
)

SHM_DIR = "/dev/shm"
#: The NVIDIA driver library loaded by default, and the variable naming
#: another one (tests point it at ``csrc/tests/fake_cuda.c``).
DEFAULT_DRIVER = "libcuda.so.1"
DRIVER_ENV = "SNAKEPIT_CUDA_DRIVER"

# CUresult values that mean "this handle is not valid here".
_CUDA_ERROR_INVALID_VALUE = 1
_CUDA_ERROR_INVALID_HANDLE = 400

_DESCRIPTOR_REASONS: dict[Status, str] = {
    Status.NAME: "the region name is not of the form /snakepit-<pid>-<16 hex digits>",
    Status.MAGIC: (
        "the region header magic is wrong: not a snakepit region, or its memory was overwritten"
    ),
    Status.VERSION: "the region layout version is not supported by this build",
    Status.SIZE: "the region size disagrees with its header or with the descriptor",
    Status.RANGE: "the offset/length lies outside the region's data",
    Status.OVERFLOW: "the descriptor's size arithmetic overflows",
    Status.NOTFOUND: "no such region: it was already released, or its owner process died",
    Status.PERM: "permission denied: the region belongs to another user",
}

_GENERIC_REASONS: dict[Status, str] = {
    Status.INVALID: "invalid argument",
    Status.NOMEM: "out of memory (malloc/mmap failed)",
    Status.EXISTS: "the region already exists",
    Status.OS: "operating system error",
    Status.REFCOUNT: "reference count would drop below zero, or the block is not live",
}


def _shm_free_bytes() -> int | None:
    try:
        st = os.statvfs(SHM_DIR)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _device(device_id: int | None) -> str:
    return "cuda" if device_id is None else f"cuda:{device_id}"


def _cuda_error(
    code: Status, operation: str, detail: str, cuda_result: int, device_id: int | None
) -> SnakepitError:
    if code is Status.NO_DRIVER:
        return DeviceNotAvailableError(
            f"CUDA driver not available ({DEFAULT_DRIVER}): {detail}",
            device=_device(device_id),
            reason=f"no usable CUDA driver library ({DEFAULT_DRIVER}): {detail}",
            suggestion=(
                f"install the NVIDIA driver so that {DEFAULT_DRIVER} can be loaded, or set "
                f"{DRIVER_ENV} to the driver library's path"
            ),
        )
    if operation == "open":
        if cuda_result == CUDA_ERROR_INVALID_CONTEXT:
            return DeviceError(
                "cannot open a CUDA IPC handle in the process that exported it (the driver "
                f"answers CUDA_ERROR_INVALID_CONTEXT): {detail}",
                device=_device(device_id),
                suggestion="use the original device pointer in the exporting process",
            )
        if cuda_result in (_CUDA_ERROR_INVALID_HANDLE, _CUDA_ERROR_INVALID_VALUE):
            reason = f"the CUDA IPC handle was rejected by the driver: {detail}"
            return InvalidDescriptorError(
                f"open GPUTensorRef failed: {reason}", reason=reason, status=int(code)
            )
    return DeviceError(f"CUDA IPC {operation} failed: {detail}", device=_device(device_id))


def status_error(
    status: int,
    os_errno: int,
    *,
    operation: str,
    name: str | None = None,
    requested: int | None = None,
    available: int | None = None,
    cuda_result: int = 0,
    detail: str = "",
    device_id: int | None = None,
) -> SnakepitError:
    """The snakepit exception for a failing C-core status.

    Args:
        status: The ``sp_status`` code (negative; ``SP_OK`` is not an error).
        os_errno: ``sp_last_errno()`` after the failing call (0 if none).
        operation: What was attempted, for the message (``"attach region"``;
            for CUDA calls one of ``"load"``, ``"export"``, ``"open"``,
            ``"close"``).
        name: The region name involved, when there is one.
        requested: Bytes asked for, for allocation failures.
        available: Bytes left, for allocation failures. For ``NOSPACE`` it
            defaults to the free space of ``/dev/shm`` measured now.
        cuda_result: The raw ``CUresult`` of a failing CUDA call (0 if none).
        detail: The C core's description of a CUDA failure.
        device_id: The CUDA device concerned, when known.

    Returns:
        The exception to raise (the caller raises it, keeping its own frame).

    Raises:
        ValueError: ``status`` is ``SP_OK``.
    """
    if status == Status.OK:
        raise ValueError("status_error() called with SP_OK, which is not an error")
    where = f" for region {name!r}" if name else ""
    err = f" ({os.strerror(os_errno)}, errno {os_errno})" if os_errno else ""
    try:
        code = Status(status)
    except ValueError:
        return SharedMemoryError(
            f"{operation} failed{where}: unknown core status {status}{err}",
            name=name,
            status=status,
            os_errno=os_errno or None,
        )
    if code is Status.NO_DRIVER or code is Status.CUDA:
        return _cuda_error(code, operation, detail, cuda_result, device_id)
    if code is Status.UNSHAREABLE:
        return UnshareableMemoryError(
            f"CUDA IPC {operation} failed: {detail or 'memory CUDA IPC cannot share'}",
            device=_device(device_id),
            reason=detail or None,
        )
    reason = _DESCRIPTOR_REASONS.get(code)
    if reason is not None:
        return InvalidDescriptorError(
            f"{operation} failed{where}: {reason}",
            reason=reason,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is Status.NOSPACE:
        if available is None:
            available = _shm_free_bytes()
        return SharedMemoryExhaustedError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left in {SHM_DIR}{err}",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is Status.CAP:
        return SharedMemoryCapError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left under snakepit's shared-memory cap",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
        )
    generic = _GENERIC_REASONS.get(code, code.name.lower())
    return SharedMemoryError(
        f"{operation} failed{where}: {generic}{err}",
        name=name,
        status=int(code),
        os_errno=os_errno or None,
    )


def core_error(
    exc: CoreError,
    operation: str,
    *,
    name: str | None = None,
    requested: int | None = None,
    available: int | None = None,
    device_id: int | None = None,
) -> SnakepitError:
    """The snakepit exception for ``exc`` (see :func:`status_error`).

    ``name`` defaults to the region name the core reported.
    """
    return status_error(
        exc.status,
        exc.os_errno,
        operation=operation,
        name=exc.name if name is None else name,
        requested=requested,
        available=available,
        cuda_result=exc.cuda_result,
        detail=exc.detail or str(exc),
        device_id=device_id,
    )


class core_errors:  # noqa: N801 - used like a function: `with core_errors(...):`
    """A ``with`` block inside which a ``CoreError`` leaves as its snakepit exception."""

    __slots__ = ("device_id", "name", "operation", "requested")

    def __init__(
        self,
        operation: str,
        *,
        name: str | None = None,
        requested: int | None = None,
        device_id: int | None = None,
    ) -> None:
        self.operation = operation
        self.name = name
        self.requested = requested
        self.device_id = device_id

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, CoreError):
            raise core_error(
                exc,
                self.operation,
                name=self.name,
                requested=self.requested,
                device_id=self.device_id,
            ) from None
