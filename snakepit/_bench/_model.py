"""What a benchmark case is: :class:`Case`, :class:`Impl`, :class:`Timed`, :class:`Target`.

Also :class:`Env`, the warm executors the cases share, and the small helpers
the cases and both runners use (sizes, /dev/shm room, checks).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import snakepit
from snakepit._bench import tasks
from snakepit.errors import SnakepitError

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
#: Workers of every shared executor unless a case asks for another count.
WORKERS = 2
#: The value the workers read back from the arrays and tables they are given.
MARK = 42
SHM_DIR = "/dev/shm"
#: A zero-copy size runs only when /dev/shm has this many times its bytes free.
SHM_HEADROOM = 3
#: Set to 1 to run the heavy cases under ``pytest --benchmark-disable`` too.
HEAVY_ENV = "SNAKEPIT_BENCH_HEAVY"

Submit = Callable[..., "Future[Any]"]
Key = tuple[str, str]  # (case, impl), as the runners record them


class BenchError(SnakepitError):
    """A benchmark produced a wrong result (the numbers would mean nothing)."""


def expect(value: object, expected: object, what: str) -> None:
    """Raise :class:`BenchError` unless ``value == expected``."""
    if value != expected:
        raise BenchError(f"{what}: got {value!r}, expected {expected!r}")


def size_label(nbytes: int, sep: str = " ") -> str:
    """``1 KiB``, ``100 MiB``, ``1.5 GiB``: a byte count for humans (``sep=""``: case names)."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.3g}{sep}{unit}" if nbytes % scale else f"{nbytes // scale}{sep}{unit}"
    return f"{nbytes}{sep}B"


def shm_free() -> int | None:
    """Free bytes in /dev/shm, or None when it cannot be read."""
    try:
        return shutil.disk_usage(SHM_DIR).free
    except OSError:
        return None


def shm_skip_reason(nbytes: int, free: int | None) -> str | None:
    """Why a zero-copy case of ``nbytes`` cannot run with ``free`` bytes in /dev/shm.

    None when it can: it needs SHM_HEADROOM times its size (snakepit's array,
    the peer's segment, and room for everything else).
    """
    needed = SHM_HEADROOM * nbytes
    if free is not None and free >= needed:
        return None
    have = "could not be read" if free is None else f"has {size_label(free)} free"
    return (
        f"/dev/shm {have}; a {size_label(nbytes)} case needs {size_label(needed)} "
        f"({SHM_HEADROOM}x its size). In Docker, raise --shm-size."
    )


@dataclass(frozen=True)
class Timed:
    """What one implementation times: ``fn(*args)``, ``iterations`` times per round.

    ``setup`` runs untimed before every round (it needs ``iterations == 1``);
    a round's duration is divided by ``iterations``. ``check`` raises
    :class:`BenchError` when a result is wrong. ``quick_rounds`` and
    ``quick_iterations`` are what ``snakepit bench --quick`` uses.
    ``metrics``, asked once after the last round, gives figures other than
    the median (``{"p99": seconds}``), which a :class:`Target` may name.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    rounds: int = 20
    quick_rounds: int | None = None
    warmup: int = 1
    iterations: int = 1
    quick_iterations: int | None = None
    setup: Callable[[], object] | None = None
    check: Callable[[Any], None] | None = None
    metrics: Callable[[], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.setup is not None and max(self.iterations, self.quick_iterations or 1) > 1:
            raise ValueError("a Timed with a setup runs one iteration per round")

    def call(self) -> Any:
        """One call of the timed function (what a round repeats)."""
        return self.fn(*self.args)


Prepare = Callable[["Env"], AbstractContextManager[Timed]]


@dataclass(frozen=True)
class Impl:
    """One implementation of a case: snakepit's, or a peer's.

    ``skip``: why it is never measured (a peer too slow at this size);
    ``requires``: modules it needs (skipped, with the reason, when missing);
    ``alone``: in an interleaved case, timed on its own after the others
    (what it holds, memory or processes, should not sit beside them).
    """

    impl: str
    label: str
    prepare: Prepare
    skip: str | None = None
    requires: tuple[str, ...] = ()
    alone: bool = False

    def missing(self) -> str | None:
        """Why this implementation cannot run here, or None."""
        if self.skip is not None:
            return self.skip
        absent = [name for name in self.requires if importlib.util.find_spec(name) is None]
        return f"{', '.join(absent)} is not installed" if absent else None


@dataclass(frozen=True)
class Target:
    """A performance target: ``(case, impl)`` median / ``baseline`` median <= ``limit``.

    Without a baseline the subject's median (seconds) is held to ``limit``.
    ``limit`` None: shown for information only. ``metric`` names the figure
    compared on both sides: ``"median"``, or one of :attr:`Timed.metrics`.
    """

    label: str
    subject: Key
    baseline: Key | None
    limit: float | None
    goal: str = ""
    metric: str = "median"


@dataclass(frozen=True)
class Case:
    """One comparison: ``impls[0]`` is snakepit's, the rest its peers (same run).

    ``skip`` is asked at run time (free /dev/shm, say); ``targets`` are this
    case's performance targets, as ``bench/report.py`` checks them. A
    ``heavy`` case (gigabytes, or seconds a round) runs in the pytest suite
    only when benchmarks are timed (``make bench``) or :data:`HEAVY_ENV` is 1.
    ``interleave`` > 0: the implementations are prepared together and timed
    in turn, that many rounds at a time (:mod:`snakepit._bench._interleave`),
    so a change of load moves every side alike.
    """

    name: str
    title: str
    impls: tuple[Impl, ...]
    group: str = ""
    nbytes: int | None = None
    workers: int | None = None
    skip: Callable[[], str | None] | None = None
    targets: tuple[Target, ...] = ()
    heavy: bool = False
    interleave: int = 0


def vs(
    case: str,
    label: str,
    limit: float | None,
    goal: str = "",
    *,
    impl: str = "snakepit",
    peer: str = "peer",
) -> Target:
    """The usual target: ``case``'s ``impl`` against its ``peer`` in the same case."""
    return Target(label, (case, impl), (case, peer), limit, goal)


def seconds(case: str, label: str, limit: float | None, goal: str = "") -> Target:
    """A target on snakepit's median itself (seconds), with no baseline."""
    return Target(label, (case, "snakepit"), None, limit, goal)


def peer_executor(workers: int = WORKERS) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` like every peer's: spawn start method, Ctrl-C ignored."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=tasks.ignore_sigint,
    )


def warm(submit: Submit, workers: int = WORKERS) -> set[int]:
    """Start every worker and run a few calls through each; returns the pids seen."""
    pids = {f.result() for f in [submit(tasks.pid_after, 0.05) for _ in range(2 * workers)]}
    if not pids:
        raise BenchError("no worker answered")
    for _ in range(20):
        expect(submit(tasks.noop).result(), None, "warm-up call")
    return pids


def wait_until_idle(pool: snakepit.Pool, timeout: float = 60.0) -> None:
    """Block until every worker slot is up and idle again (after a restart)."""
    deadline = time.monotonic() + timeout
    while (stats := pool.stats())["idle"] < stats["size"]:
        if time.monotonic() > deadline:
            raise BenchError(f"the pool did not recover from a crash: {stats}")
        time.sleep(0.002)


class Env:
    """Warm executors the cases share, one pair per worker count, made on first use.

    Other shared things (a Ray session, a loky executor) are kept by name
    with :meth:`keep`. :meth:`close` shuts every one down (waiting for its
    workers).
    """

    def __init__(self) -> None:
        self._pools: dict[int, snakepit.Pool] = {}
        self._peers: dict[int, ProcessPoolExecutor] = {}
        self._kept: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def pool(self, workers: int = WORKERS) -> snakepit.Pool:
        """A warm ``snakepit.Pool`` of ``workers`` workers."""
        if workers not in self._pools:
            pool = snakepit.Pool(workers=workers)
            self._pools[workers] = pool
            expect(len(warm(pool.submit, workers)), workers, "workers answering")
        return self._pools[workers]

    def peer(self, workers: int = WORKERS) -> ProcessPoolExecutor:
        """A warm ``ProcessPoolExecutor`` of ``workers`` workers."""
        if workers not in self._peers:
            executor = peer_executor(workers)
            self._peers[workers] = executor
            warm(executor.submit, workers)
        return self._peers[workers]

    def submit(self, impl: str, workers: int = WORKERS) -> Submit:
        """``submit`` of the warm pool (``impl == "snakepit"``) or of the peer executor."""
        if impl == "snakepit":
            return self.pool(workers).submit
        return self.peer(workers).submit

    def keep(self, name: str, start: Callable[[], AbstractContextManager[Any]]) -> Any:
        """What ``start()`` yields, entered on first use of ``name`` and exited by :meth:`close`."""
        if name not in self._kept:
            self._kept[name] = self._stack.enter_context(start())
        return self._kept[name]

    def close(self) -> None:
        """Shut every executor down; pending calls are cancelled."""
        with contextlib.ExitStack() as stack:
            stack.push(self._stack.__exit__)  # the kept things go last (Ray's shutdown is slow)
            for pool in self._pools.values():
                stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            for executor in self._peers.values():
                stack.callback(executor.shutdown, wait=True, cancel_futures=True)
            self._pools.clear()
            self._peers.clear()
            self._kept.clear()
        self._stack = contextlib.ExitStack()


def timed_only(timed: Timed) -> Prepare:
    """An implementation with nothing to prepare or clean up."""

    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        yield timed

    return prepare
