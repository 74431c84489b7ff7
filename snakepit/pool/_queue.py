"""Which worker runs which call: the shared queue, per-worker queues and sessions.

Calls of a session wait in their worker's own queue; every other call waits
in the shared queue and goes to the first idle worker of its device (any
worker when it names none). Guarded by the supervisor's lock.
"""

from __future__ import annotations

from collections import deque

from ._calls import Call
from ._handle import WorkerHandle
from ._waited import Outcome

__all__ = ["CallQueue"]


class CallQueue:
    """The calls waiting for a worker, and the sessions pinned to workers."""

    def __init__(self, handles: list[WorkerHandle]) -> None:
        self._handles = handles
        #: Each worker's own queue (its session calls), read at C speed.
        self._own = [handle.queue for handle in handles]
        self._shared: deque[Call] = deque()
        self._sessions: dict[str, WorkerHandle] = {}

    def put(self, call: Call) -> None:
        """Queue a call: on its session's worker, or in the shared queue."""
        if call.session is not None:
            self._session_worker(call.session).queue.append(call)
        else:
            self._shared.append(call)

    def _session_worker(self, session: str) -> WorkerHandle:
        handle = self._sessions.get(session)
        if handle is None or handle.state == "unhealthy":
            healthy = [h for h in self._handles if h.state != "unhealthy"]
            # Spread sessions: fewest sessions first, then idle, then shortest queue.
            pinned = {id(h): 0 for h in healthy}
            for held in self._sessions.values():
                if id(held) in pinned:
                    pinned[id(held)] += 1
            handle = min(healthy, key=lambda h: (pinned[id(h)], h.state != "idle", len(h.queue)))
            self._sessions[session] = handle
        return handle

    def empty(self) -> bool:
        """Whether no call waits at all (checked before every dispatch)."""
        return not self._shared and not any(self._own)

    def next_for(self, handle: WorkerHandle) -> Call | None:
        """The next call ``handle`` should run, taken off its queue."""
        if handle.queue:
            return handle.queue.popleft()
        for index, call in enumerate(self._shared):
            if call.device is None or call.device == handle.device:
                del self._shared[index]
                return call
        return None

    def give_up(self, handle: WorkerHandle, *, everyone: bool) -> list[Call]:
        """A worker position is given up: its sessions end; returns the calls
        that can no longer run (the shared queue's too when ``everyone`` is)."""
        failed = list(handle.queue)
        handle.queue.clear()
        for name, pinned in list(self._sessions.items()):
            if pinned is handle:
                del self._sessions[name]
        if everyone:
            failed += self._shared
            self._shared.clear()
        return failed

    def take(self, future: Outcome) -> Call | None:
        """Take the waiting call of ``future`` off its queue (None: not waiting)."""
        for queue in (self._shared, *(h.queue for h in self._handles)):
            for call in queue:
                if call.outer is future:
                    queue.remove(call)
                    return call
        return None

    def take_all(self) -> list[Call]:
        """Empty every queue (shutdown); returns what was waiting."""
        waiting = list(self._shared) + [c for h in self._handles for c in h.queue]
        self._shared.clear()
        for handle in self._handles:
            handle.queue.clear()
        return waiting

    def __len__(self) -> int:
        return len(self._shared) + sum(len(h.queue) for h in self._handles)
