"""A fork of a process that holds shared arrays drops none of its references.

The child inherits the parent's arrays, not their references: an inherited
array dying in the child (its last name deleted, a ``ref.release()``) must
leave the parent's blocks, counts and names as they were. This is what
every worker of ``Pool(template="supervisor")`` is: such a child.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

import numpy as np

import snakepit
from snakepit import zero_copy
from tests.pool import _in_place_tasks

NBYTES = 2 << 20


def _in_child(act: Callable[[], None]) -> int:
    """Run ``act`` in a forked child; its exit code (0: it ran to the end)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            act()
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_child_drops_no_reference_on_its_parents_own_blocks() -> None:
    holder = {"array": snakepit.empty(NBYTES, "uint8")}
    holder["array"][:] = 7
    ref = zero_copy.ref_of(holder["array"])
    before = zero_copy.block_refcount(ref)

    def drop() -> None:
        zero_copy.release_ref(ref)
        del holder["array"]  # the last name of the array, here

    assert _in_child(drop) == 0
    assert zero_copy.block_refcount(ref) == before
    assert int(holder["array"][0]) == 7
    assert os.path.exists("/dev/shm/" + ref.region)


def test_a_child_drops_no_reference_on_blocks_its_parent_holds_of_a_worker() -> None:
    with snakepit.Pool(workers=1, timeout=60) as pool:
        pool.call(_in_place_tasks.fresh, NBYTES)
        holder = {"result": pool.call(_in_place_tasks.fresh, NBYTES)}
        ref = zero_copy.ref_of(holder["result"])
        # The worker drops its own references just after sending; only then
        # is the count the parent's alone, and stable.
        deadline = time.monotonic() + 10
        while zero_copy.block_refcount(ref) != 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        before = zero_copy.block_refcount(ref)
        assert before == 1

        def drop() -> None:
            del holder["result"]

        assert _in_child(drop) == 0
        assert zero_copy.block_refcount(ref) == before
        expected = np.arange(NBYTES // 8, dtype=np.float64) * 2
        np.testing.assert_array_equal(holder["result"], expected)
        holder.clear()
