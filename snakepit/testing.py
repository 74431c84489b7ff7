"""Leak checks for test suites that use snakepit (ours, and yours).

Use them in fixtures: after a test module, :func:`reap_leaked_workers` must
return nothing; after the session, :func:`leaked_segments` must.
"""

from __future__ import annotations

import os

import psutil

from snakepit.zero_copy import _arena, _gc


def reap_leaked_workers() -> list[int]:
    """Kill and reap snakepit workers (and zombies) left among our children.

    Returns their pids: a non-empty list means a pool was not shut down.
    """
    leaked = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "snakepit.worker" in " ".join(
                child.cmdline()
            ):
                leaked.append(child)
        except psutil.Error:
            continue
    for proc in leaked:
        proc.kill()
    psutil.wait_procs(leaked, timeout=5)
    return [proc.pid for proc in leaked]


def leaked_segments() -> list[str]:
    """Release this process's shared memory as its exit would, then list leftovers.

    Returns the names of this process's regions still in /dev/shm and of
    regions whose owner died (those are removed on the way).
    """
    _arena.reset_for_tests()
    mine = [n for n in _gc.list_regions() if n.startswith(f"/snakepit-{os.getpid()}-")]
    return mine + _gc.collect_garbage()
