"""A ledger, in shared memory, of the block references a worker holds.

A worker records every reference it takes on a block it does not own (after
taking it) and erases the record before dropping it, so that when the worker
dies, the supervisor can drop exactly the references the worker still held
(docs/zero-copy.md, lifetimes). Each ordering errs on the side of a leak, never of a block
freed while still in use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: One entry per (region, data offset) held; more distinct blocks than this at
#: once are not recorded (they leak if the worker then dies).
LEDGER_ENTRIES = 1024
#: An entry: the region's name (64 bytes), the block's offset, the count.
_ENTRY_FIELDS = [("name", "S64"), ("offset", "<u8"), ("count", "<i8")]
_ENTRY_BYTES = 64 + 8 + 8
LEDGER_BYTES = LEDGER_ENTRIES * _ENTRY_BYTES


class LeaseLedger:
    """Counts of references held, keyed by (region name, data offset)."""

    def __init__(self, memory: np.ndarray[Any, Any]) -> None:
        import numpy as np

        if memory.dtype != np.uint8 or memory.nbytes < LEDGER_BYTES:
            raise ValueError(f"a ledger needs {LEDGER_BYTES} bytes of uint8 memory")
        entry = np.dtype(_ENTRY_FIELDS)
        assert entry.itemsize == _ENTRY_BYTES
        self._entries = memory[:LEDGER_BYTES].view(entry)
        self._lock = threading.Lock()
        self._index: dict[tuple[bytes, int], int] = {}
        self._flatnonzero = np.flatnonzero
        for slot in np.flatnonzero(self._entries["count"] > 0):
            entry = self._entries[slot]
            self._index[(bytes(entry["name"]), int(entry["offset"]))] = int(slot)

    def record(self, name: str, offset: int) -> None:
        """Note one more reference held on the block (call after taking it)."""
        key = (name.encode(), offset)
        with self._lock:
            slot = self._index.get(key)
            if slot is None:
                free = self._flatnonzero(self._entries["count"] == 0)
                if free.size == 0:
                    return
                slot = int(free[0])
                self._entries[slot] = (key[0], offset, 0)
                self._index[key] = slot
            self._entries["count"][slot] += 1

    def erase(self, name: str, offset: int) -> None:
        """Note one reference fewer (call before dropping it)."""
        key = (name.encode(), offset)
        with self._lock:
            slot = self._index.get(key)
            if slot is None:
                return
            self._entries["count"][slot] -= 1
            if self._entries["count"][slot] <= 0:
                self._entries[slot] = (b"", 0, 0)
                del self._index[key]

    def held(self) -> list[tuple[str, int, int]]:
        """(region name, data offset, count) of every reference recorded."""
        with self._lock:
            live = self._entries[self._entries["count"] > 0]
            return [
                (bytes(e["name"]).decode(errors="replace"), int(e["offset"]), int(e["count"]))
                for e in live
            ]

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._entries[:] = (b"", 0, 0)
            self._index.clear()


class LazyLedger:
    """A :class:`LeaseLedger` opened on its first use: a worker whose calls
    never hold a block never opens it (nor imports numpy to do so)."""

    def __init__(self, open_memory: Callable[[], np.ndarray[Any, Any]]) -> None:
        self._open_memory = open_memory
        self._ledger: LeaseLedger | None = None
        self._lock = threading.Lock()

    def opened(self) -> LeaseLedger:
        """The ledger, opened now if it was not yet."""
        ledger = self._ledger
        if ledger is None:
            with self._lock:
                if self._ledger is None:
                    self._ledger = LeaseLedger(self._open_memory())
                ledger = self._ledger
        return ledger

    def record(self, name: str, offset: int) -> None:
        """As :meth:`LeaseLedger.record`."""
        self.opened().record(name, offset)

    def erase(self, name: str, offset: int) -> None:
        """As :meth:`LeaseLedger.erase`."""
        self.opened().erase(name, offset)

    def held(self) -> list[tuple[str, int, int]]:
        """As :meth:`LeaseLedger.held` (nothing, if never opened)."""
        return [] if self._ledger is None else self._ledger.held()

    def clear(self) -> None:
        """As :meth:`LeaseLedger.clear`."""
        if self._ledger is not None:
            self._ledger.clear()
