"""The catalogue's small-call cases: no-op, map, floors, load, object-heavy, throughput.

Part of :mod:`snakepit._bench.cases` (which lists them in ``SUITES``):

- :func:`noop_case` and :func:`map_case`: the no-op round trip (against
  ProcessPoolExecutor, loky and the pipe floor) and chunked map;
- :func:`pipe_pingpong`: a raw ``os.pipe`` ping-pong between two processes,
  the floor of the no-op round trip;
- :func:`spin_case`: ``spin_seconds`` (the worker polls after answering)
  against no spinning, idle and with one busy process on the box;
- :func:`idle_case`: the no-op round trip after a pause, against
  ProcessPoolExecutor and the pipe floor after the same pause;
- :func:`objects_case`: a million small dicts as the argument, against
  plain ``pickle.dumps`` + ``loads``;
- :func:`throughput_case`: 20,000 no-op calls from 4 threads, with p99.

Every helper process is a fresh interpreter (``subprocess``, never a fork of
a process that runs pool threads), ignores Ctrl-C (the parent stops it) and
is stopped when its case ends, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import snakepit
from snakepit._bench import tasks
from snakepit._bench._lifecycle import pool_accepts
from snakepit._bench._model import (
    WORKERS,
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Target,
    Timed,
    expect,
    vs,
    warm,
)
from snakepit._bench._peers import LOKY, env_loky

#: The child of the ping-pong: echo every byte until the parent closes its end.
_PIPE_CHILD = """\
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
r, w = int(sys.argv[1]), int(sys.argv[2])
while os.read(r, 1):
    os.write(w, b"x")
"""
#: A competing CPU load that ends by itself if its parent dies.
_BUSY_CHILD = """\
import os, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


def _stop(child: subprocess.Popen[bytes], *, kill: bool) -> None:
    if kill:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


# ------------------------------------------------------------ pipe floor


@contextlib.contextmanager
def pipe_pingpong(env: Env) -> Iterator[Timed]:
    """One byte to another process and one back, over two ``os.pipe`` pairs."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _PIPE_CHILD, str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
        )
    except BaseException:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        raise
    os.close(to_child_r)
    os.close(from_child_w)

    def ping() -> bytes:
        os.write(to_child_w, b"x")
        return os.read(from_child_r, 1)

    try:
        yield Timed(
            ping,
            rounds=200,
            quick_rounds=30,
            warmup=20,
            check=lambda answer: expect(answer, b"x", "the pipe child's answer"),
        )
    finally:
        os.close(to_child_w)  # the child reads EOF and exits
        os.close(from_child_r)
        _stop(child, kill=False)


# ------------------------------------------------------------ no-op, map


def noop_calls(pool: snakepit.Pool, *, rounds: int, quick_rounds: int, warmup: int) -> Timed:
    """Rounds of one ``pool.call`` of the no-op task, each checked."""
    return Timed(
        pool.call,
        (tasks.noop,),
        rounds=rounds,
        quick_rounds=quick_rounds,
        warmup=warmup,
        check=lambda result: expect(result, None, "no-op call"),
    )


def noop_case() -> Case:
    """An empty call's round trip, 2 workers each, and the raw pipe ping-pong floor."""
    check = lambda result: expect(result, None, "no-op call")  # noqa: E731

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        yield noop_calls(env.pool(), rounds=200, quick_rounds=30, warmup=20)

    def peer(submitter: Any) -> Any:
        @contextlib.contextmanager
        def prepare(env: Env) -> Iterator[Timed]:
            submit = submitter(env)

            def call() -> Any:
                return submit(tasks.noop).result()

            yield Timed(call, rounds=200, quick_rounds=30, warmup=20, check=check)

        return prepare

    return Case(
        "noop",
        "no-op call round trip",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl("ppe", "ProcessPoolExecutor", peer(lambda env: env.peer().submit)),
            Impl(
                "loky",
                "loky.ProcessPoolExecutor",
                peer(lambda env: env_loky(env).submit),
                requires=LOKY,
            ),
            Impl("pipe", "raw os.pipe ping-pong, two processes (floor)", pipe_pingpong),
        ),
        workers=WORKERS,
        interleave=20,
        targets=(
            vs("noop", "no-op call", 0.5, "<= 0.5x", peer="ppe"),
            vs("noop", "no-op call / loky", None, peer="loky"),
            vs("noop", "no-op call / os.pipe ping-pong", 3.0, "within 3x", peer="pipe"),
        ),
    )


#: Chunked map: many tiny items, in chunks, as ProcessPoolExecutor users write it.
MAP_ITEMS, MAP_CHUNKSIZE = 2000, 100


def map_case() -> Case:
    """``map(abs, range(2000), chunksize=100)``, 2 workers each."""
    expected = sum(range(MAP_ITEMS))

    def check(result: Any) -> None:
        expect(result, expected, "sum of the mapped items")

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        pool = env.pool()

        def run() -> int:
            return sum(pool.map(abs, range(MAP_ITEMS), chunksize=MAP_CHUNKSIZE))

        yield Timed(run, rounds=30, quick_rounds=5, warmup=3, check=check)

    @contextlib.contextmanager
    def peer(env: Env) -> Iterator[Timed]:
        executor = env.peer()

        def run() -> int:
            return sum(executor.map(abs, range(MAP_ITEMS), chunksize=MAP_CHUNKSIZE))

        yield Timed(run, rounds=30, quick_rounds=5, warmup=3, check=check)

    return Case(
        "map-chunked",
        f"map over {MAP_ITEMS} tiny items, chunksize {MAP_CHUNKSIZE}",
        (
            Impl("snakepit", "snakepit.Pool.map", own),
            Impl("ppe", "ProcessPoolExecutor.map", peer),
        ),
        workers=WORKERS,
        interleave=1,
        targets=(
            vs(
                "map-chunked",
                f"map {MAP_ITEMS} items, chunksize {MAP_CHUNKSIZE}",
                1.0,
                "no slower",
                peer="ppe",
            ),
        ),
    )


# ------------------------------------------------------------ spin, loaded


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen[bytes]]:
    """One process keeping a CPU busy for as long as the block runs."""
    child = subprocess.Popen([sys.executable, "-c", _BUSY_CHILD])
    try:
        time.sleep(0.2)  # it is spinning before anything is measured
        if child.poll() is not None:
            raise BenchError(f"the busy process exited with {child.returncode}")
        yield child
    finally:
        _stop(child, kill=True)


class SharedBusyProcess:
    """One :func:`busy_process` for every implementation of a case prepared
    at once (turn about): started by the first to enter, stopped by the last
    to leave, so the box has one busy process whoever is being timed."""

    def __init__(self) -> None:
        self._users = 0
        self._stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[subprocess.Popen[bytes]]:
        """The running busy process, while this block runs."""
        if self._users == 0:
            self._child = self._stack.enter_context(busy_process())
        self._users += 1
        try:
            yield self._child
        finally:
            self._users -= 1
            if self._users == 0:
                self._stack.close()


_shared_busy = SharedBusyProcess()


def _noop_under(loaded: bool, pool_kwargs: dict[str, Any]) -> Prepare:
    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        with snakepit.Pool(workers=WORKERS, **pool_kwargs) as pool:
            warm(pool.submit, WORKERS)
            with _shared_busy() if loaded else contextlib.nullcontext():
                yield noop_calls(pool, rounds=300, quick_rounds=30, warmup=20)

    return prepare


def spin_case(loaded: bool) -> Case:
    """No-op round trips with the default ``spin_seconds`` against ``spin_seconds=0``."""
    name = "spin-loaded" if loaded else "spin-idle"
    where = "one busy process on the box" if loaded else "idle box"
    no_spin = None if pool_accepts("spin_seconds") else "snakepit.Pool has no spin_seconds"
    return Case(
        name,
        f"no-op call, default spin_seconds, {where}",
        (
            Impl("snakepit", "snakepit.Pool, default spin_seconds", _noop_under(loaded, {})),
            Impl(
                "no-spin",
                "snakepit.Pool, spin_seconds=0",
                _noop_under(loaded, {"spin_seconds": 0.0}),
                skip=no_spin,
            ),
        ),
        group="spin",
        workers=WORKERS,
        # Both pools turn about (the machine's wake-up cost swings within
        # a minute); loaded, they share one busy process.
        interleave=20,
        targets=(
            vs(
                name,
                f"no-op, default spin / no spin, {where}",
                1.0,
                "never worse than no spinning",
                peer="no-spin",
            ),
        ),
    )


# ----------------------------------------------------- object-heavy argument

OBJECTS = 1_000_000


def _objects() -> list[dict[str, Any]]:
    return [{"id": i, "name": "item", "score": 0.5} for i in range(OBJECTS)]


def _objects_prepare(run: Callable[[list[dict[str, Any]]], int], rounds: int) -> Prepare:
    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        payload = _objects()
        yield Timed(
            run,
            (payload,),
            rounds=rounds,
            quick_rounds=2,
            warmup=1,
            check=lambda count: expect(count, OBJECTS, "items received"),
        )

    return prepare


def _pickle_round_trip(payload: list[dict[str, Any]]) -> int:
    copy = pickle.loads(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    return len(copy)


def objects_case() -> Case:
    """A list of a million small dicts as the argument; the worker returns its length."""
    name = "objects-1M"

    def own(env: Env) -> Any:
        pool = env.pool()
        return _objects_prepare(lambda payload: pool.call(tasks.length, payload), 5)(env)

    def ppe(env: Env) -> Any:
        executor = env.peer()
        return _objects_prepare(lambda payload: executor.submit(tasks.length, payload).result(), 3)(
            env
        )

    label = "1M small dicts as an argument"
    return Case(
        name,
        f"argument of {OBJECTS:,} small dicts, worker returns len()",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl(
                "pickle",
                "pickle.dumps + pickle.loads in-process (floor)",
                _objects_prepare(_pickle_round_trip, 5),
            ),
            Impl("ppe", "ProcessPoolExecutor", ppe),
        ),
        group="objects",
        workers=WORKERS,
        heavy=True,
        targets=(
            vs(name, f"{label} / pickle dumps+loads", 1.2, "within 1.2x", peer="pickle"),
            vs(name, f"{label} / PPE", None, peer="ppe"),
        ),
    )


# ---------------------------------------------------------------- throughput

THROUGHPUT_CALLS, THROUGHPUT_THREADS = 20_000, 4


def p99(samples: list[float]) -> float:
    """The 99th percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _throughput(call: Callable[[], object]) -> Timed:
    """``THROUGHPUT_CALLS`` calls of ``call`` from ``THROUGHPUT_THREADS`` threads, per round."""
    per_thread = THROUGHPUT_CALLS // THROUGHPUT_THREADS
    round_p99: list[float] = []

    def run() -> int:
        latencies: list[list[float]] = [[] for _ in range(THROUGHPUT_THREADS)]
        errors: list[BaseException] = []
        start = threading.Barrier(THROUGHPUT_THREADS)

        def client(mine: list[float]) -> None:
            try:
                start.wait()
                for _ in range(per_thread):
                    began = time.perf_counter()
                    call()
                    mine.append(time.perf_counter() - began)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(mine,), daemon=True) for mine in latencies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise BenchError(f"a client thread failed: {errors[0]!r}") from errors[0]
        samples = [value for mine in latencies for value in mine]
        round_p99.append(p99(samples))
        return len(samples)

    def metrics() -> dict[str, float]:
        timed = round_p99[1:] or round_p99  # the first round is the warm-up
        return {"p99": statistics.median(timed)}

    return Timed(
        run,
        rounds=3,
        quick_rounds=1,
        warmup=1,
        check=lambda done: expect(done, per_thread * THROUGHPUT_THREADS, "calls done"),
        metrics=metrics,
    )


def _noop_sides(
    timed: Callable[[Callable[[], Any]], Timed], *, own_pool: bool = False
) -> tuple[Prepare, Prepare]:
    """snakepit's and PPE's sides of a no-op case: ``timed`` of one no-op call
    of the run's warm pool (``own_pool``: of a pool of the case's own, whose
    spinning learns from this case alone: see ``pool/_spin.py``), and of the
    run's warm ProcessPoolExecutor."""

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        if not own_pool:
            pool = env.pool()
            yield timed(lambda: pool.call(tasks.noop))
            return
        with snakepit.Pool(workers=WORKERS) as alone:
            expect(len(warm(alone.submit, WORKERS)), WORKERS, "workers answering")
            yield timed(lambda: alone.call(tasks.noop))

    @contextlib.contextmanager
    def ppe(env: Env) -> Iterator[Timed]:
        submit = env.peer().submit
        yield timed(lambda: submit(tasks.noop).result())

    return own, ppe


def throughput_case() -> Case:
    """20,000 no-op calls from 4 threads, pools of 2 workers: wall time and p99 latency."""
    name = "throughput-4-threads"

    own, ppe = _noop_sides(_throughput)
    label = f"{THROUGHPUT_CALLS:,} no-op calls from {THROUGHPUT_THREADS} threads"
    targets: tuple[Target, ...] = (
        vs(name, f"{label}: time / PPE", 0.5, ">= 2x PPE's calls/s", peer="ppe"),
        Target(
            f"{label}: p99 latency / PPE's",
            (name, "snakepit"),
            (name, "ppe"),
            1.0,
            "p99 no worse",
            metric="p99",
        ),
    )
    return Case(
        name,
        f"throughput: {label}, {WORKERS} workers",
        (
            Impl("snakepit", "snakepit.Pool.call", own),
            Impl("ppe", "ProcessPoolExecutor.submit().result()", ppe),
        ),
        group="throughput",
        workers=WORKERS,
        heavy=True,
        targets=targets,
    )


# ------------------------------------------------------------ idle pauses

#: Seconds everything sits idle before each timed call of :func:`idle_case`.
IDLE_SECONDS = 0.01


def idle_case() -> Case:
    """A no-op call after :data:`IDLE_SECONDS` of idleness (calls spaced out,
    as a service makes them, not back to back), against PPE and the pipe
    floor after the same pause. Every process then sleeps between calls, and
    a sleeping worker wakes with cold caches on a cold CPU: the figure is
    several times the back-to-back one.
    """
    check = lambda result: expect(result, None, "no-op call")  # noqa: E731

    def pause() -> None:
        time.sleep(IDLE_SECONDS)

    def paused(fn: Callable[[], Any], *, checked: Callable[[Any], None] = check) -> Timed:
        return Timed(fn, rounds=100, quick_rounds=10, warmup=5, setup=pause, check=checked)

    # A pool of its own: spaced-out calls teach a pool not to poll, which
    # the cases after this one must not inherit.
    own, ppe = _noop_sides(paused, own_pool=True)

    @contextlib.contextmanager
    def pipe(env: Env) -> Iterator[Timed]:
        with pipe_pingpong(env) as timed:
            yield paused(timed.fn, checked=lambda answer: expect(answer, b"x", "the pipe child"))

    label = f"no-op after {IDLE_SECONDS * 1e3:g} ms idle"
    return Case(
        "noop-idle",
        f"no-op call round trip, each after {IDLE_SECONDS * 1e3:g} ms of idleness",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl("ppe", "ProcessPoolExecutor", ppe),
            Impl("pipe", "raw os.pipe ping-pong, two processes (floor)", pipe),
        ),
        workers=WORKERS,
        targets=(
            vs("noop-idle", f"{label} / PPE", None, peer="ppe"),
            vs("noop-idle", f"{label} / os.pipe ping-pong", None, peer="pipe"),
        ),
    )


def load_cases() -> tuple[Case, ...]:
    """Spin idle and loaded, idle pauses, the object-heavy argument, throughput."""
    return (spin_case(False), spin_case(True), idle_case(), objects_case(), throughput_case())
