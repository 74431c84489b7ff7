"""Circuit breakers for the pool (see docs/crash-recovery.md).

A breaker counts consecutive failures of worker calls. Past
``failure_threshold`` it *opens* and refuses calls outright
(:class:`~snakepit.errors.CircuitOpenError`) instead of feeding more work to
workers that keep dying. After ``open_duration`` it becomes *half-open* and
lets up to ``half_open_max_probes`` calls through at once; ``success_threshold``
successful probes close it again, one failed probe re-opens it.

What counts as a failure is the caller's decision: the pool records worker
crashes and timeouts, not exceptions raised by user code (those say nothing
about the health of the workers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from snakepit._util import StrEnum
from snakepit.errors import CircuitOpenError
from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import CIRCUIT_CLOSE, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN

__all__ = ["CircuitBreaker", "CircuitBreakerRegistry", "CircuitState", "circuits_for"]


class CircuitState(StrEnum):
    """State of a circuit breaker."""

    CLOSED = "closed"
    """Calls flow; failures are counted."""
    OPEN = "open"
    """Calls are refused until ``open_duration`` has elapsed."""
    HALF_OPEN = "half_open"
    """A limited number of probe calls may test whether things recovered."""


_Transition = tuple[CircuitState, CircuitState]


_EVENTS = {
    CircuitState.OPEN: CIRCUIT_OPEN,
    CircuitState.HALF_OPEN: CIRCUIT_HALF_OPEN,
    CircuitState.CLOSED: CIRCUIT_CLOSE,
}


class CircuitBreaker:
    """A thread-safe closed / open / half-open circuit breaker.

    Args:
        name: Name reported in errors and events (``global``, ``device:cuda:0``).
        failure_threshold: Consecutive failures that open a closed circuit.
        success_threshold: Successful half-open probes that close the circuit.
        open_duration: Seconds the circuit stays open before probing.
        half_open_max_probes: Probe calls allowed in flight while half-open.
        clock: Monotonic time source in seconds (injectable for tests).
        pool: The pool whose breaker this is, named in its events.

    Raises:
        ValueError: A threshold or duration is out of range.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        success_threshold: int = 2,
        open_duration: float = 30.0,
        half_open_max_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
        pool: str | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if success_threshold < 1:
            raise ValueError(f"success_threshold must be >= 1, got {success_threshold}")
        if not open_duration >= 0.0:  # also rejects NaN
            raise ValueError(f"open_duration must be >= 0, got {open_duration}")
        if half_open_max_probes < 1:
            raise ValueError(f"half_open_max_probes must be >= 1, got {half_open_max_probes}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.open_duration = float(open_duration)
        self.half_open_max_probes = half_open_max_probes
        self._clock = clock
        self._lock = threading.Lock()
        #: The pool whose breaker this is (tags its events).
        self.pool = pool
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._successes = 0
        self._probes = 0
        self._opened_at = 0.0
        self._open_count = 0

    # ----------------------------------------------------------- transitions

    def _move(self, new: CircuitState, out: list[_Transition]) -> None:
        # Caller holds the lock; events are emitted after it is released.
        old = self._state
        if old is new:
            return
        self._state = new
        self._failures = 0
        self._successes = 0
        self._probes = 0
        if new is CircuitState.OPEN:
            self._opened_at = self._clock()
            self._open_count += 1
        out.append((old, new))

    def _refresh(self, out: list[_Transition]) -> None:
        # OPEN → HALF_OPEN happens lazily, on the first look after the timer ran out.
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.open_duration
        ):
            self._move(CircuitState.HALF_OPEN, out)

    def _fire(self, out: list[_Transition]) -> None:
        # Outside the lock: handlers may look at the breaker.
        for old, new in out:
            event = _EVENTS[new]
            if enabled(event):
                execute(event, {}, {"circuit": self.name, "previous": str(old), "pool": self.pool})

    # ---------------------------------------------------------------- public

    @property
    def state(self) -> CircuitState:
        """Current state (an expired OPEN reads as HALF_OPEN)."""
        out: list[_Transition] = []
        with self._lock:
            self._refresh(out)
            state = self._state
        self._fire(out)
        return state

    @property
    def failure_count(self) -> int:
        """Consecutive failures counted in the current state."""
        with self._lock:
            return self._failures

    @property
    def open_count(self) -> int:
        """How many times this circuit has opened since creation or :meth:`reset`."""
        with self._lock:
            return self._open_count

    def retry_after(self) -> float | None:
        """Seconds until an open circuit admits a probe; 0 when not open."""
        out: list[_Transition] = []
        with self._lock:
            self._refresh(out)
            result = self._retry_after_locked()
        self._fire(out)
        return result

    def _retry_after_locked(self) -> float | None:
        if self._state is CircuitState.OPEN:
            return max(0.0, self.open_duration - (self._clock() - self._opened_at))
        if self._state is CircuitState.HALF_OPEN and self._probes >= self.half_open_max_probes:
            return None  # free again as soon as a probe in flight reports back
        return 0.0

    def acquire(self) -> None:
        """Admit one call, or raise :class:`CircuitOpenError`.

        In HALF_OPEN each admitted call is a probe and must be followed by
        :meth:`record_success`, :meth:`record_failure` or :meth:`release`.

        Raises:
            CircuitOpenError: The circuit is open (``retry_after`` = seconds
                left), or half-open with every probe slot taken
                (``retry_after`` = ``None``).
        """
        if self._state is CircuitState.CLOSED:
            # Read without the lock: a closed circuit admits every call, and
            # this read is a valid moment to have admitted it (one attribute
            # read is atomic; a concurrent transition orders after it).
            return
        out: list[_Transition] = []
        refused: float | None = None
        admitted = True
        with self._lock:
            self._refresh(out)
            if self._state is CircuitState.OPEN:
                admitted = False
                refused = self._retry_after_locked()
            elif self._state is CircuitState.HALF_OPEN:
                if self._probes >= self.half_open_max_probes:
                    admitted = False
                else:
                    self._probes += 1
        self._fire(out)
        if not admitted:
            raise CircuitOpenError(circuit=self.name, retry_after=refused)

    def allow(self) -> bool:
        """Like :meth:`acquire` but returns ``False`` instead of raising."""
        try:
            self.acquire()
        except CircuitOpenError:
            return False
        return True

    def release(self) -> None:
        """Give back a half-open probe slot whose call ended with no verdict (cancelled)."""
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and self._probes > 0:
                self._probes -= 1

    def record_success(self) -> None:
        """Report a successful call."""
        if self._state is CircuitState.CLOSED and not self._failures:
            # Nothing to change (read without the lock, as in acquire): the
            # success orders before any failure being counted concurrently.
            return
        out: list[_Transition] = []
        with self._lock:
            self._refresh(out)
            if self._state is CircuitState.CLOSED:
                self._failures = 0
            elif self._state is CircuitState.HALF_OPEN:
                self._probes = max(0, self._probes - 1)
                self._successes += 1
                if self._successes >= self.success_threshold:
                    self._move(CircuitState.CLOSED, out)
            # OPEN: a late result of a call admitted before the circuit opened; ignore.
        self._fire(out)

    def record_failure(self) -> None:
        """Report a failed call (worker crash, timeout...)."""
        out: list[_Transition] = []
        with self._lock:
            self._refresh(out)
            if self._state is CircuitState.CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._move(CircuitState.OPEN, out)
            elif self._state is CircuitState.HALF_OPEN:
                # One failed probe is enough: recovery has not happened.
                self._move(CircuitState.OPEN, out)
            # OPEN: late failure; the timer keeps running from the original opening.
        self._fire(out)

    def record(self, ok: bool) -> None:
        """``record_success()`` if ``ok`` else ``record_failure()``."""
        if ok:
            self.record_success()
        else:
            self.record_failure()

    def reset(self) -> None:
        """Force the circuit CLOSED and clear all counters."""
        out: list[_Transition] = []
        with self._lock:
            self._move(CircuitState.CLOSED, out)
            self._failures = 0
            self._open_count = 0
        self._fire(out)

    def snapshot(self) -> dict[str, object]:
        """JSON-serialisable view of the breaker."""
        out: list[_Transition] = []
        with self._lock:
            self._refresh(out)
            snap: dict[str, object] = {
                "name": self.name,
                "state": self._state.value,
                "failures": self._failures,
                "successes": self._successes,
                "probes_in_flight": self._probes,
                "open_count": self._open_count,
                "retry_after": self._retry_after_locked(),
            }
        self._fire(out)
        return snap

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state.value})"


class CircuitBreakerRegistry:
    """The pool's breakers: one global circuit plus one per device, created on demand.

    Every device breaker uses the same configuration as the global one. Each
    call goes through both: the device circuit isolates one bad GPU, the global
    circuit stops the whole pool when every device is failing.

    ``enabled=False`` makes a registry that admits every call and records
    nothing: what a pool uses unless asked for breakers (``Pool(circuit_breaker=
    True)`` or a registry of your own), because a batch job wants every item's
    own outcome, not refusals after a run of bad items (see
    docs/crash-recovery.md, "Circuit breakers: batch and service defaults").
    """

    GLOBAL = "global"
    """Name of the global circuit."""

    def __init__(
        self,
        failure_threshold: int = 5,
        success_threshold: int = 2,
        open_duration: float = 30.0,
        half_open_max_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
        *,
        enabled: bool = True,
    ) -> None:
        #: False: every call is admitted and no outcome is recorded.
        self.enabled = enabled
        self._config = {
            "failure_threshold": failure_threshold,
            "success_threshold": success_threshold,
            "open_duration": open_duration,
            "half_open_max_probes": half_open_max_probes,
        }
        self._clock = clock
        self._lock = threading.Lock()
        self.pool: str | None = None
        self._global = self._make(self.GLOBAL)
        self._devices: dict[str, CircuitBreaker] = {}

    def _make(self, name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=int(self._config["failure_threshold"]),
            success_threshold=int(self._config["success_threshold"]),
            open_duration=float(self._config["open_duration"]),
            half_open_max_probes=int(self._config["half_open_max_probes"]),
            clock=self._clock,
            pool=self.pool,
        )

    def adopt(self, pool: str) -> None:
        """Tag the breakers' events with ``pool`` (the first pool that uses them)."""
        with self._lock:
            if self.pool is not None:
                return
            self.pool = pool
            for breaker in [self._global, *self._devices.values()]:
                breaker.pool = pool

    @property
    def global_breaker(self) -> CircuitBreaker:
        """The pool-wide breaker."""
        return self._global

    def device(self, device: str) -> CircuitBreaker:
        """The breaker for ``device`` (created on first use), named ``device:<device>``."""
        with self._lock:
            breaker = self._devices.get(device)
            if breaker is None:
                breaker = self._make(f"device:{device}")
                self._devices[device] = breaker
            return breaker

    def breakers(self) -> dict[str, CircuitBreaker]:
        """All breakers by name, the global one first (none when disabled)."""
        if not self.enabled:
            return {}
        with self._lock:
            devices = list(self._devices.values())
        return {b.name: b for b in [self._global, *devices]}

    def check(self, device: str | None = None) -> None:
        """Admit a call on ``device``: acquire the global circuit, then the device's.

        Raises:
            CircuitOpenError: Either circuit refused; nothing stays acquired.
        """
        if not self.enabled:
            return
        self._global.acquire()
        if device is None:
            return
        try:
            self.device(device).acquire()
        except CircuitOpenError:
            # Do not leak a half-open probe slot of the global circuit.
            self._global.release()
            raise

    def record(self, device: str | None, ok: bool) -> None:
        """Report a call's outcome to the global circuit and the device's."""
        if not self.enabled:
            return
        self._global.record(ok)
        if device is not None:
            self.device(device).record(ok)

    def release(self, device: str | None = None) -> None:
        """Give back probe slots taken by :meth:`check` for a call with no verdict."""
        if not self.enabled:
            return
        self._global.release()
        if device is not None:
            self.device(device).release()

    def reset(self) -> None:
        """Close every circuit."""
        for breaker in self.breakers().values():
            breaker.reset()

    def snapshot(self) -> dict[str, dict[str, object]]:
        """JSON-serialisable view of every breaker, by name."""
        return {name: b.snapshot() for name, b in self.breakers().items()}


def circuits_for(setting: CircuitBreakerRegistry | bool | None) -> CircuitBreakerRegistry:
    """The registry a pool uses for its ``circuit_breaker`` argument.

    None or False: breakers off (every call runs; batch use). True: breakers
    with the default thresholds (service use). A registry: that one.

    Raises:
        TypeError: ``setting`` is none of those.
    """
    if setting is None or setting is False:
        return CircuitBreakerRegistry(enabled=False)
    if setting is True:
        return CircuitBreakerRegistry()
    if isinstance(setting, CircuitBreakerRegistry):
        return setting
    raise TypeError(
        f"circuit_breaker must be True, False, None or a CircuitBreakerRegistry, not {setting!r}"
    )
