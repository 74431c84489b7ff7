"""A worker imports numpy only when a call brings an array (or its code
imports it): a pool started with ``preload=[]`` runs plain calls without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit.zero_copy._ledger import LEDGER_BYTES, LazyLedger, LeaseLedger
from tests.worker._numpy_free import first, numpy_twice, worker_state


def test_the_worker_module_imports_no_numpy() -> None:
    code = textwrap.dedent(
        """
        import sys
        import snakepit.worker._main
        import snakepit._bench.tasks
        import tests.worker._numpy_free
        print("numpy" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("first_call", "args"),
    [
        (first, (np.arange(3.0) + 7,)),  # a small fresh array: flat, copied
        (first, ([np.arange(3.0) + 7],)),  # nested in a list: pickled
        (first, (snakepit.share(np.arange(3.0) + 7),)),  # shared: a descriptor
        (first, (np.arange(300_000.0) + 7,)),  # large: copied into shared memory
    ],
    ids=["flat", "pickled", "shared", "large"],
)
def test_the_first_array_brings_numpy_and_its_allocator(first_call: Any, args: Any) -> None:
    with snakepit.Pool(1, preload=[]) as pool:
        assert pool.call(worker_state) == (False, False)
        assert pool.call(first_call, *args) == 7.0
        # The allocator is installed by the call after numpy came.
        pool.call(worker_state)
        assert pool.call(worker_state) == (True, True)


def test_a_worker_whose_code_imports_numpy_returns_its_arrays() -> None:
    with snakepit.Pool(1, preload=[]) as pool:
        assert pool.call(worker_state) == (False, False)
        small = pool.call(numpy_twice, 4)
        large = pool.call(numpy_twice, 400_000)
        assert small.tolist() == [0.0, 2.0, 4.0, 6.0]
        assert large[-1] == 2 * 399_999
        assert pool.call(worker_state) == (True, True)


def test_a_preloaded_worker_has_numpy_and_its_allocator_at_once() -> None:
    with snakepit.Pool(1) as pool:
        assert pool.call(worker_state) == (True, True)


def test_a_lazy_ledger_opens_on_first_use_only() -> None:
    opened: list[int] = []
    memory = np.zeros(LEDGER_BYTES, np.uint8)

    def open_memory() -> Any:
        opened.append(1)
        return memory

    lazy = LazyLedger(open_memory)
    assert lazy.held() == []
    lazy.clear()
    assert opened == []  # nothing recorded: never opened
    lazy.record("snakepit-x", 64)
    lazy.record("snakepit-x", 64)
    lazy.erase("snakepit-y", 0)  # never recorded: ignored
    assert opened == [1]
    assert lazy.held() == [("snakepit-x", 64, 2)]
    # The same memory as a ledger the supervisor reads after a death.
    assert LeaseLedger(memory).held() == [("snakepit-x", 64, 2)]
    lazy.erase("snakepit-x", 64)
    lazy.clear()
    assert lazy.held() == []
    assert opened == [1]


def test_a_worker_killed_holding_a_block_first_opened_its_ledger() -> None:
    from snakepit import zero_copy
    from snakepit.errors import WorkerCrashedError
    from tests.worker._numpy_free import die, keep

    shared = snakepit.share(np.arange(4.0))
    ref = zero_copy.ref_of(shared)
    with snakepit.Pool(1, preload=[]) as pool:
        pool.call(keep, shared)
        assert zero_copy.block_refcount(ref) == 2  # the worker's own, in its ledger
        with pytest.raises(WorkerCrashedError):
            pool.call(die)
        # The dead worker's reference (recorded in a ledger it opened lazily)
        # was dropped by the supervisor: only ours is left.
        assert zero_copy.block_refcount(ref) == 1
        assert pool.call(first, shared) == 0.0
    ref.release()
