"""The worker's side of recycling and limits: working directory, memory limits.

The pool sends ``cwd``, ``max_memory`` and ``memory_limit`` in the init
config (see :mod:`snakepit.pool._recycle`, which decides what a retired
worker means). Here:

* ``cwd``: the worker changes into it before the initializer runs.
* ``memory_limit`` (hard): ``RLIMIT_DATA`` caps the worker's data segment
  (heap and private writable mappings, reserved or touched; shared-memory
  arrays are not counted), so an allocation past it fails at once with
  MemoryError instead of growing until the kernel's OOM killer ends some
  process. The error the caller gets names this limit, not the host's free
  memory, and the worker asks to be replaced after replying.
* ``max_memory`` (soft): after each call the worker reads its private
  resident memory (``/proc/self/statm``: resident minus shared pages, one
  ``pread`` of a descriptor kept open, a few microseconds) and, above the
  limit, asks to be replaced after replying (``MSG_RETIRE``).
"""

from __future__ import annotations

import os
import resource
from typing import Any

from snakepit._util import format_bytes
from snakepit.errors import OutOfMemoryError

__all__ = ["Limits", "apply"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Limits:
    """The memory limits of this worker process, and its ``statm`` descriptor."""

    def __init__(self, max_memory: int | None, memory_limit: int | None) -> None:
        self.max_memory = max_memory
        self.memory_limit = memory_limit
        self._statm: int | None = None
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._statm = None  # not Linux: no soft limit, the hard one still holds

    def _pages(self) -> list[int] | None:
        if self._statm is None:
            return None
        try:
            return [int(field) for field in os.pread(self._statm, 128, 0).split()]
        except (OSError, ValueError):
            return None

    def private_resident(self) -> int | None:
        """Resident bytes that are this process's own (shared pages excluded)."""
        pages = self._pages()
        return None if pages is None or len(pages) < 3 else (pages[1] - pages[2]) * _PAGE

    def data_size(self) -> int | None:
        """Bytes of the data segment, as ``RLIMIT_DATA`` counts them (about)."""
        pages = self._pages()
        return None if pages is None or len(pages) < 6 else pages[5] * _PAGE

    def after_call(self, error: BaseException | None) -> tuple[str, int] | None:
        """Whether to ask for a replacement after this call: ``(reason, resident bytes)``."""
        if self.memory_limit is not None and isinstance(error, MemoryError):
            return "memory_limit_per_worker", self.private_resident() or 0
        if self.max_memory is not None:
            resident = self.private_resident()
            if resident is not None and resident > self.max_memory:
                return "max_memory_per_worker", resident
        return None

    def annotate(self, error: BaseException, record: dict[str, Any]) -> None:
        """Make a MemoryError's record name the limit it hit, with its figures.

        The supervisor rebuilds it as :class:`~snakepit.errors.OutOfMemoryError`
        (still catchable as MemoryError); figures given here win over the
        host's free memory measured in the worker.
        """
        limit = self.memory_limit
        if limit is None or not isinstance(error, MemoryError):
            return
        context = record.get("context")
        if not isinstance(context, dict):
            return
        memory = context.get("memory")
        memory = memory if isinstance(memory, dict) else {}
        context["category"] = "oom"
        context["memory"] = memory
        used = self.data_size()
        memory.pop("live", None)  # the host's figures: not what ran out
        memory["device"] = "cpu"
        memory["total"] = limit
        if used is not None:
            memory["free"] = max(0, limit - used)
        requested = memory.get("requested")
        over = isinstance(requested, int) and used is not None and used + requested > limit
        used_text = f", {format_bytes(used)} in use" if used is not None else ""
        hit = "was reached" if over or not isinstance(requested, int) else "may have been reached"
        message = record.get("message") if isinstance(record.get("message"), str) else ""
        record["message"] = (
            f"{message or 'MemoryError'} (the worker's memory limit "
            f"memory_limit_per_worker={format_bytes(limit)} {hit}: it caps the worker's "
            f"data segment, RLIMIT_DATA{used_text})"
        )


def apply(config: dict[str, Any]) -> Limits | None:
    """Apply the pool's ``cwd`` and memory limits to this process (at start-up).

    Returns the limits to check after each call, or None when there are none.
    Raises OSError (a missing ``cwd``) or OutOfMemoryError (the worker is
    already past its hard limit before its first call).
    """
    cwd = config.get("cwd")
    if cwd is not None:
        os.chdir(cwd)
    max_memory, memory_limit = config.get("max_memory"), config.get("memory_limit")
    if max_memory is None and memory_limit is None:
        return None
    limits = Limits(max_memory, memory_limit)
    if memory_limit is not None:
        used = limits.data_size()
        if used is not None and used >= memory_limit:
            raise OutOfMemoryError(
                f"memory_limit_per_worker={format_bytes(memory_limit)} is below what a "
                f"worker's data segment takes at start ({format_bytes(used)}): raise the limit",
                device="cpu",
                total=memory_limit,
                available=0,
            )
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            memory_limit = min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (memory_limit, hard))
    return limits
