"""Garbage in /dev/shm: regions of dead processes, stale mappings, dead workers' references.

Regions are named ``/snakepit-<owner pid>-<16 hex>``, so whoever finds a
region whose owner is gone may unlink it; a supervisor also drops the block
references a dead worker noted in its :class:`~._ledger.LeaseLedger`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from snakepit import _core

from . import _mapping
from ._ledger import LeaseLedger
from ._mapping import SHM_DIR

NAME_PREFIX = "snakepit-"

#: Called after a dead process's references were dropped (the CUDA leases
#: free exports whose tokens those references held: ``_cuda_leases``).
after_drop: list[Callable[[], object]] = []


def _owner_alive(pid: int) -> bool:
    import psutil  # only when collecting (workers start without it)

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def list_regions() -> list[str]:
    """Names of every snakepit region in /dev/shm."""
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    return ["/" + e for e in entries if e.startswith(NAME_PREFIX)]


def collect_garbage(owner_pid: int | None = None) -> list[str]:
    """Unlink regions whose owner process is dead (or owned by ``owner_pid``).

    Returns the names removed. Regions of live processes are left alone.
    """
    removed = []
    for name in list_regions():
        if _core.name_status(name) != _core.Status.OK:
            continue
        owner = _core.name_owner(name)
        if owner_pid is not None:
            if owner != owner_pid:
                continue
        elif owner == os.getpid() or _owner_alive(owner):
            continue
        with contextlib.suppress(_core.CoreError):
            _core.unlink(name)
            removed.append(name)
    state = _mapping.state
    with state.lock:
        state.unlinked.update(name for name in removed if name in state.regions)
    return removed


def prune_mappings() -> int:
    """Unmap cached regions that were unlinked and that no live view uses."""
    state = _mapping.state
    with state.lock:
        return sum(_mapping.unmap_if_unused(name) for name in list(state.regions))


def drop_held_references(ledger: LeaseLedger) -> int:
    """Drop every reference a dead process noted in its ledger; returns how many.

    Called by the supervisor after a worker died. Names and offsets come from
    another process, so each is validated like any descriptor.
    """
    dropped = 0
    for name, offset, count in ledger.held():
        if _core.name_status(name) != _core.Status.OK:
            continue
        try:
            region = _mapping.state.regions.get(name) or _core.Region.attach(name)
            for _ in range(count):
                region.block_ref(offset, -1)
                dropped += 1
        except _core.CoreError:
            continue
    ledger.clear()
    for hook in after_drop:
        hook()
    return dropped


def forget_mappings() -> None:
    """Drop this process's cache of mapped regions (tests; see snakepit.testing)."""
    _mapping.state.regions.clear()
