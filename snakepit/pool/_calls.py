"""What travels through the supervisor: one attempt at a call, and how functions are named."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from snakepit._wire import codec
from snakepit._wire._pickling import name_of

from ._waited import Outcome

__all__ = ["Call", "function_name"]


@dataclass(eq=False, slots=True)
class Call:
    """One attempt at running a call on a worker (a retry is a copy with ``attempt + 1``)."""

    call_id: int
    fn_id: int
    fn_blob: bytes
    args_blob: codec.Blob
    keepalive: list[Any]
    timeout: float | None
    device: str | None
    session: str | None
    idempotent: bool
    attempt: int
    outer: Outcome
    function: str = "?"
    deadline: float | None = None
    submitted: float = field(default_factory=time.monotonic)
    # Timings for telemetry (seconds); those of the last attempt.
    serialize_time: float = 0.0
    enqueued: float = 0.0
    dispatched: float = 0.0
    queue_time: float = 0.0
    python_time: float = 0.0
    deserialize_time: float = 0.0
    worker_id: int | None = None
    # The arguments' array data are still the caller's own memory, not a
    # copy: fine while the call is sent before ``submit`` returns, copied if
    # it has to wait in the queue (see ``codec.snapshot``).
    borrows_caller_memory: bool = False
    #: W3C trace context of the call's span, sent with it (OpenTelemetry in use).
    trace: dict[str, str] | None = None
    #: Its caller's thread waits for it (``Pool.call``): sent to an idle
    #: worker, the caller reads the reply itself (see ``_direct.py``).
    caller_waits: bool = False
    #: The stream the caller is to read (set at dispatch; a ``Channel``).
    #: Neither this nor ``waiter`` is copied into a retry.
    read_from: Any = field(default=None, init=False)
    #: Held while the waiting caller of a queued call sleeps: released when
    #: it may read its reply (``read_from``) or the call is over.
    waiter: Any = field(default=None, init=False)
    #: Whether its caller and its worker may poll for the next frame (set at
    #: dispatch: not while the pool is saturated, see ``Supervisor.spin_pays``).
    spin: bool = field(default=True, init=False)
    #: Whether its overhead tells how well its way (``spin``) does: the call
    #: before it went the same way (see ``_spin.py``).
    spin_counts: bool = field(default=False, init=False)
    #: Its caller polled for the reply and did not catch it by polling
    #: (``FrameReader.polls_lost``): the machine had no core to spare.
    poll_lost: bool = field(default=False, init=False)


#: ``module:qualname`` of a function, as telemetry names it.
function_name = name_of
