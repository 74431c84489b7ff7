"""The shared-memory exception classes (same rules as ``_hierarchy.py``)."""

from __future__ import annotations

import os

from snakepit._util import format_bytes
from snakepit.errors import _advice
from snakepit.errors._advice import SHM_DIR
from snakepit.errors._base import SnakepitError, error_class
from snakepit.errors._hierarchy import _optional_int

# ------------------------------------------------------------------ shared memory


@error_class
class SharedMemoryError(SnakepitError):
    """A shared-memory operation of the zero-copy layer failed.

    Attributes:
        name: The region name concerned, when known.
        status: The C core status code (``sp_status`` in
            ``csrc/snakepit_core.h``), when known.
        os_errno: The ``errno`` of the failing system call, when known.
    """

    __match_args__ = ("name", "status", "os_errno")

    name: str | None = None
    status: int | None = None
    os_errno: int | None = None

    def __post_init__(self) -> None:
        self.status = _optional_int(self.status)
        self.os_errno = _optional_int(self.os_errno)
        super().__post_init__()

    def _default_message(self) -> str:
        where = f" for region {self.name!r}" if self.name else ""
        err = f": {os.strerror(self.os_errno)}" if self.os_errno else ""
        return f"shared memory operation failed{where}{err}"


@error_class
class InvalidDescriptorError(SharedMemoryError):
    """A TensorRef or region name is forged, malformed or stale.

    Attributes:
        reason: What was wrong with it.
    """

    __match_args__ = ("reason", "name")

    reason: str | None = None

    def _default_message(self) -> str:
        where = f" {self.name!r}" if self.name else ""
        return f"invalid shared-memory descriptor{where}: {self.reason or 'rejected'}"

    def _default_suggestion(self) -> str | None:
        return _advice.INVALID_DESCRIPTOR


@error_class
class SharedMemoryExhaustedError(SharedMemoryError):
    """The shared-memory filesystem (``/dev/shm``) has no room for an allocation.

    Attributes:
        requested: Bytes asked for.
        available: Bytes left, when known.
        hint: How to make room (also the default ``suggestion``).
    """

    __match_args__ = ("requested", "available", "hint")

    requested: int | None = None
    available: int | None = None
    hint: str = ""

    def __post_init__(self) -> None:
        self.requested = _optional_int(self.requested)
        self.available = _optional_int(self.available)
        self.hint = self.hint or self._default_hint()
        super().__post_init__()

    def _default_hint(self) -> str:
        return _advice.shared_memory_advice(self.requested, self.available)

    def _default_message(self) -> str:
        return (
            f"cannot allocate {format_bytes(self.requested)} of shared memory: only "
            f"{format_bytes(self.available)} left in {SHM_DIR}"
        )

    def _default_suggestion(self) -> str | None:
        return self.hint


@error_class
class SharedMemoryCapError(SharedMemoryExhaustedError):
    """An allocation would exceed snakepit's configured shared-memory cap.

    Attributes:
        cap: The configured cap in bytes, when known.
    """

    __match_args__ = ("requested", "available", "hint", "cap")

    cap: int | None = None

    def __post_init__(self) -> None:
        self.cap = _optional_int(self.cap)
        super().__post_init__()

    def _default_hint(self) -> str:
        return _advice.shared_memory_cap_advice(self.cap)

    def _default_message(self) -> str:
        return (
            f"cannot allocate {format_bytes(self.requested)} of shared memory: only "
            f"{format_bytes(self.available)} left under snakepit's shared-memory cap"
        )
