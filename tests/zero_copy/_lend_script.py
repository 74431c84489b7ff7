"""Run by test_lent_arena in a process of its own: lending an arena to numpy's
allocator lasts for the process. Prints "ok" when every check held."""

from __future__ import annotations

import gc
import sys

import numpy as np

from snakepit import _core

KIB = 1 << 10


def main() -> None:
    arena = _core.Arena(cache_bytes=64 << 20, prefault=False)
    plain = np.ones(64 * KIB)
    assert arena.adopt_array(plain) is None  # not the arena's memory
    _core.install_warm_allocator(1 << 20, 64 << 20)
    _core.lend_arena(arena, 16 * KIB)

    # Born in the arena; adopted in place, with a reference of its own.
    born = np.arange(64 * KIB, dtype=np.float64)
    assert _core.lent_buffers() == 1
    assert arena.stats()["live_blocks"] == 1
    view = arena.adopt_array(born)
    assert view.ctypes.data == born.ctypes.data
    assert view.base.owner.adopted
    inner = arena.adopt_array(born[10:20])
    assert inner.ctypes.data == born[10:].ctypes.data
    assert inner.shape == (10,)
    del inner
    del born  # numpy's free: the block stays for the view
    gc.collect()
    assert _core.lent_buffers() == 0
    assert arena.stats()["deferred"] == 1
    assert float(view[-1]) == 64 * KIB - 1
    del view
    assert arena.stats()["live_blocks"] == 0

    # Below the lending size, np.zeros and read-only views.
    small = np.ones(KIB)
    zeros = np.zeros(64 * KIB)
    assert arena.adopt_array(small) is None
    assert arena.adopt_array(zeros) is None
    frozen = np.ones(64 * KIB)
    frozen.flags.writeable = False
    assert not arena.adopt_array(frozen).flags.writeable
    del small, zeros, frozen

    # Growth (realloc) keeps the values and the lending.
    grown = np.full(8 * KIB, 5.0)
    grown.resize(32 * KIB, refcheck=False)
    assert (grown[: 8 * KIB] == 5.0).all()
    assert _core.lent_buffers() == 1
    grown.resize(16, refcheck=False)  # below the lending size: back to malloc
    assert _core.lent_buffers() == 0
    assert (grown == 5.0).all()
    del grown

    # Lent under a lower lending size, freed after a higher one was set.
    early = np.ones(4 * KIB)
    assert _core.lent_buffers() == 1
    _core.lend_arena(arena, 1 << 20)
    del early
    assert _core.lent_buffers() == 0
    _core.lend_arena(arena, 16 * KIB)

    # A full table: later buffers come from elsewhere, all stay valid.
    many = [np.full(4 * KIB, float(i)) for i in range(1100)]
    assert _core.lent_buffers() == 1024
    assert all(float(a[-1]) == i for i, a in enumerate(many))
    del many
    assert _core.lent_buffers() == 0
    assert arena.stats()["live_blocks"] == 0

    # Closing the lent arena only unlinks it: its arrays stay valid, and new
    # buffers come from elsewhere.
    kept = np.full(64 * KIB, 2.0)
    arena.close()
    assert not arena.closed
    after = np.full(64 * KIB, 3.0)
    assert _core.lent_buffers() == 1
    assert float(kept.sum()) == 2.0 * 64 * KIB
    assert float(after.sum()) == 3.0 * 64 * KIB
    assert arena.adopt_array(kept) is None  # unlinked: lends no more
    del kept, after
    assert _core.lent_buffers() == 0
    print("ok")


if __name__ == "__main__":
    main()
    sys.exit(0)
