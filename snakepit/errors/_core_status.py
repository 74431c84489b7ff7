"""TRANSITIONAL: the C-core status mapping, until ``snakepit/zero_copy/_errors.py`` lands.

Issue 12 moves the one translator of C status codes into the zero-copy layer
(``zero_copy/_errors.py``, over ``_core.Status`` declared from the ``.pxd``).
Until that branch is merged, ``zero_copy/_memory.py`` and
``zero_copy/_dlpack.py`` still import :func:`from_core_status` from
``snakepit.errors``, so it lives on here, apart from the hierarchy and out
of ``snakepit.errors.__all__``. Delete this module, its import in
``errors/__init__.py`` and ``tests/errors/test_core_status.py`` at the merge.
"""

from __future__ import annotations

import enum
import os

from snakepit._util import format_bytes
from snakepit.errors._advice import SHM_DIR as _SHM_DIR
from snakepit.errors._base import SnakepitError
from snakepit.errors._hierarchy import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
)

__all__ = ["CoreStatus", "from_core_status"]


class CoreStatus(enum.IntEnum):
    """Status codes of the C core (``sp_status`` in ``csrc/snakepit_core.h``)."""

    OK = 0
    INVALID = -1
    NAME = -2
    MAGIC = -3
    VERSION = -4
    SIZE = -5
    RANGE = -6
    NOSPACE = -7
    CAP = -8
    NOMEM = -9
    NOTFOUND = -10
    EXISTS = -11
    PERM = -12
    OS = -13
    REFCOUNT = -14
    OVERFLOW = -15
    NO_DRIVER = -16
    CUDA = -17


_DESCRIPTOR_REASONS: dict[CoreStatus, str] = {
    CoreStatus.NAME: "the region name is not of the form /snakepit-<pid>-<16 hex digits>",
    CoreStatus.MAGIC: (
        "the region header magic is wrong: not a snakepit region, or its memory was overwritten"
    ),
    CoreStatus.VERSION: "the region layout version is not supported by this build",
    CoreStatus.SIZE: "the region size disagrees with its header or with the descriptor",
    CoreStatus.RANGE: "the offset/length lies outside the region's data",
    CoreStatus.OVERFLOW: "the descriptor's size arithmetic overflows",
    CoreStatus.NOTFOUND: ("no such region: it was already released, or its owner process died"),
    CoreStatus.PERM: "permission denied: the region belongs to another user",
}

_GENERIC_REASONS: dict[CoreStatus, str] = {
    CoreStatus.INVALID: "invalid argument",
    CoreStatus.NOMEM: "out of memory (malloc/mmap failed)",
    CoreStatus.EXISTS: "the region already exists",
    CoreStatus.OS: "operating system error",
    CoreStatus.REFCOUNT: "reference count would drop below zero, or the block is not live",
}


def _device_error(code: CoreStatus, operation: str) -> SnakepitError:
    if code is CoreStatus.NO_DRIVER:
        return DeviceNotAvailableError(
            device="cuda",
            reason=f"{operation} failed: the CUDA driver (libcuda.so.1) is missing or unusable",
        )
    return DeviceError(f"{operation} failed: the CUDA driver returned an error")


def _shm_free_bytes() -> int | None:
    try:
        st = os.statvfs(_SHM_DIR)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def from_core_status(
    status: int,
    os_errno: int,
    *,
    operation: str,
    name: str | None = None,
    requested: int | None = None,
    available: int | None = None,
) -> SnakepitError:
    """Translate a failing C-core status into the matching snakepit exception.

    Args:
        status: The ``sp_status`` code (negative; ``0`` is not an error).
        os_errno: ``sp_last_errno()`` after the failing call (0 if none).
        operation: What was attempted, for the message (``"attach region"``).
        name: The region name involved, when there is one.
        requested: Bytes asked for, for allocation failures.
        available: Bytes left, for allocation failures. For ``NOSPACE`` it
            defaults to the free space of ``/dev/shm`` measured now.

    Returns:
        The exception to raise (the caller raises it, keeping its own frame).

    Raises:
        ValueError: ``status`` is ``SP_OK``.
    """
    if status == CoreStatus.OK:
        raise ValueError("from_core_status() called with SP_OK, which is not an error")
    where = f" for region {name!r}" if name else ""
    err = f" ({os.strerror(os_errno)}, errno {os_errno})" if os_errno else ""
    try:
        code: CoreStatus | None = CoreStatus(status)
    except ValueError:
        code = None
    if code is None:
        return SharedMemoryError(
            f"{operation} failed{where}: unknown core status {status}{err}",
            name=name,
            status=status,
            os_errno=os_errno or None,
        )
    if code in (CoreStatus.NO_DRIVER, CoreStatus.CUDA):
        return _device_error(code, operation)
    if code in _DESCRIPTOR_REASONS:
        reason = _DESCRIPTOR_REASONS[code]
        return InvalidDescriptorError(
            f"{operation} failed{where}: {reason}",
            reason=reason,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is CoreStatus.NOSPACE:
        if available is None:
            available = _shm_free_bytes()
        return SharedMemoryExhaustedError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left in {_SHM_DIR}{err}",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
            os_errno=os_errno or None,
        )
    if code is CoreStatus.CAP:
        return SharedMemoryCapError(
            f"{operation} failed{where}: cannot allocate {format_bytes(requested)} of shared "
            f"memory: only {format_bytes(available)} left under snakepit's shared-memory cap",
            requested=requested,
            available=available,
            name=name,
            status=int(code),
        )
    reason = _GENERIC_REASONS.get(code, code.name.lower())
    return SharedMemoryError(
        f"{operation} failed{where}: {reason}{err}",
        name=name,
        status=int(code),
        os_errno=os_errno or None,
    )
