"""The benchmark catalogue: every case both runners measure, and its targets.

A :class:`Case` is one comparison: snakepit's implementation first, then its
peers, each an :class:`Impl`. An implementation's ``prepare(env)`` is a
context manager: it builds the data and warms what it needs (untimed), yields
a :class:`Timed` (the callable and its arguments, per-round setup, rounds,
warm-up, iterations, and a check of the result) and cleans up on exit.
:class:`Env` holds the warm executors the cases share.

Two runners read this catalogue, and nothing else decides what is measured:

- ``snakepit bench`` (:mod:`snakepit._bench.run`): a median of
  ``time.perf_counter`` rounds over the cases of :func:`cli_cases`;
- ``make bench`` (``bench/test_*.py``): one pytest-benchmark test per case
  and implementation of :data:`SUITES`, tagged ``extra_info = {case, impl}``;
  ``bench/report.py`` holds that JSON to the :data:`TARGETS`.

Every peer ``ProcessPoolExecutor`` uses the ``spawn`` start method: forking a
process that runs snakepit's supervisor threads is unsafe.

This module holds the numpy cases and the catalogue. The inline, torch and
Arrow cases are in :mod:`snakepit._bench._calls`; start-up and crashes in
:mod:`snakepit._bench._lifecycle`; the 1 GiB cases in
:mod:`snakepit._bench._large`; the no-op call and its pipe floor, chunked
map, spinning under load,
object-heavy arguments and throughput in :mod:`snakepit._bench._load`; the
telemetry and hardware cases in :mod:`snakepit._bench._local`; the optional
peers (loky, Ray) in :mod:`snakepit._bench._peers`; ``Pool(backend="ray")``
against raw Ray in :mod:`snakepit._bench._ray`; and what a case is in
:mod:`snakepit._bench._model`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np

import snakepit
from snakepit import zero_copy
from snakepit._bench import _local, tasks
from snakepit._bench._calls import arrow_cases, inline_case, torch_cases
from snakepit._bench._large import large_cases
from snakepit._bench._lifecycle import lifecycle_cases, peer_stays_broken
from snakepit._bench._load import load_cases, map_case, noop_calls, noop_case
from snakepit._bench._model import (
    GIB,
    KIB,
    MARK,
    MIB,
    SHM_HEADROOM,
    WORKERS,
    BenchError,
    Case,
    Env,
    Impl,
    Target,
    Timed,
    expect,
    shm_free,
    shm_skip_reason,
    size_label,
    vs,
)
from snakepit._bench._paced import paced_case
from snakepit._bench._ray import ray_cases

__all__ = [
    "CASES",
    "DEFAULT_SIZES",
    "GIB",
    "KIB",
    "MARK",
    "MIB",
    "PICKLE_LIMIT",
    "SHM_HEADROOM",
    "SUITES",
    "TARGETS",
    "WORKERS",
    "BenchError",
    "Case",
    "Env",
    "Impl",
    "Target",
    "Timed",
    "cli_cases",
    "ray_cases",
    "peer_stays_broken",
    "shm_free",
    "shm_skip_reason",
    "size_label",
]

#: Zero-copy sizes of ``snakepit bench`` and of the suite.
DEFAULT_SIZES: tuple[int, ...] = (KIB, MIB, 100 * MIB, GIB)
#: The pickle peer of the zero-copy case is skipped at and above this size.
PICKLE_LIMIT = GIB


def _plain_bytes(nbytes: int) -> np.ndarray[Any, Any]:
    """A plain (not shared) uint8 array, every page touched, MARK first."""
    array = np.zeros(nbytes, dtype=np.uint8)
    array.fill(0)  # touch every page, as snakepit.zeros does
    array[0] = MARK
    return array


def _plain_floats(nbytes: int) -> np.ndarray[Any, Any]:
    """Plain float32 with distinct values (not in shared memory)."""
    return np.random.default_rng(0).random(nbytes // 4, dtype=np.float32)


# ------------------------------------------------------ allocation, copy-in


def _arena_alloc(nbytes: int) -> int:
    array = snakepit.empty((nbytes,), "uint8")
    size = int(array.nbytes)
    del array  # the block goes back to the arena for the next round
    return size


def _stdlib_alloc(nbytes: int) -> int:
    segment = shared_memory.SharedMemory(create=True, size=nbytes)
    size = segment.size
    segment.close()
    segment.unlink()
    return size


def alloc_case(nbytes: int) -> Case:
    """``snakepit.empty`` from the arena against a ``SharedMemory`` create + unlink."""
    name = f"alloc-{size_label(nbytes, '')}"

    def check_arena(size: int) -> None:
        expect(size, nbytes, "arena block size")
        if zero_copy.arena_stats()["reuses"] <= 0:
            raise BenchError("the arena never reused a block")

    def check_peer(size: int) -> None:
        if size < nbytes:  # SharedMemory rounds up to whole pages
            raise BenchError(f"SharedMemory of {size} bytes, asked for {nbytes}")

    @contextlib.contextmanager
    def arena(env: Env) -> Iterator[Timed]:
        _arena_alloc(nbytes)  # first use maps the region: not what is measured
        # Many iterations per round: a single call is close to the timer's own cost.
        yield Timed(
            _arena_alloc,
            (nbytes,),
            rounds=100,
            quick_rounds=10,
            warmup=2,
            iterations=50,
            check=check_arena,
        )

    @contextlib.contextmanager
    def peer(env: Env) -> Iterator[Timed]:
        yield Timed(
            _stdlib_alloc,
            (nbytes,),
            rounds=100,
            quick_rounds=10,
            warmup=2,
            iterations=50,
            check=check_peer,
        )

    targets = {
        MIB: (1 / 20, ">= 20x faster"),
    }
    limit, goal = targets.get(nbytes, (None, ""))
    return Case(
        name,
        f"allocate {size_label(nbytes)}",
        (
            Impl("snakepit", "snakepit.empty (arena)", arena),
            Impl("peer", "multiprocessing.shared_memory create + unlink", peer),
        ),
        nbytes=nbytes,
        targets=(vs(name, f"alloc {size_label(nbytes)}: arena / SharedMemory", limit, goal),),
    )


def _share_and_release(source: np.ndarray[Any, Any]) -> bool:
    shared = snakepit.share(source)
    ok = shared.shape == source.shape and shared[0] == 3.0 and shared[-1] == 5.0
    ok = ok and snakepit.is_shared(shared)
    snakepit.ref_of(shared).release()  # the block is reusable by the next round
    return bool(ok)


def _source_100mib() -> np.ndarray[Any, Any]:
    """100 MiB of float32 with distinct values at both ends (pages really touched)."""
    array = np.ones(25 * MIB, dtype=np.float32)
    array[0] = 3.0
    array[-1] = 5.0
    return array


def share_case() -> Case:
    """``snakepit.share`` of 100 MiB against ``np.copyto`` into warm memory."""

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        yield Timed(
            _share_and_release,
            (_source_100mib(),),
            rounds=40,
            quick_rounds=5,
            warmup=5,
            check=lambda ok: expect(ok, True, "share() kept the data"),
        )

    @contextlib.contextmanager
    def copyto(env: Env) -> Iterator[Timed]:
        source = _source_100mib()
        destination = np.empty_like(source)
        destination.fill(0.0)  # fault the pages in, as the arena does

        def copy() -> np.ndarray[Any, Any]:
            np.copyto(destination, source)
            return destination

        def check(result: np.ndarray[Any, Any]) -> None:
            expect((float(result[0]), float(result[-1])), (3.0, 5.0), "np.copyto")

        yield Timed(copy, rounds=40, quick_rounds=5, warmup=5, check=check)

    name = "share-100MiB"
    return Case(
        name,
        "share 100 MiB",
        (
            Impl("snakepit", "snakepit.share", own),
            Impl("peer", "np.copyto into a warm array", copyto),
        ),
        nbytes=100 * MIB,
        interleave=5,
        targets=(vs(name, "share 100 MiB / np.copyto", 1.5, "within 1.5x"),),
    )


# ------------------------------------------------------- zero-copy, echo


def _check_mark(what: str) -> Any:
    return lambda value: expect(value, MARK, what)


def zero_copy_case(nbytes: int) -> Case:
    """A worker reads one element of an array of ``nbytes``.

    snakepit gets an array already in shared memory (``snakepit.zeros``); the
    peers are pickle through ``ProcessPoolExecutor`` and
    ``multiprocessing.shared_memory`` (create a segment, copy the array in,
    the worker attaches by name; the create, copy and unlink are counted,
    since a user must do them).
    """
    label = size_label(nbytes)
    name = f"zero-copy-{size_label(nbytes, '')}"
    small = nbytes < 10 * MIB
    peer_rounds, peer_quick = (200, 20) if small else ((20, 3) if nbytes < GIB else (10, 3))

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        pool = env.pool()
        held = [snakepit.zeros((nbytes,), "uint8")]  # emptied on exit: nothing else holds it
        held[0][0] = MARK

        def call() -> Any:
            return pool.call(tasks.first_element, held[0])

        try:
            yield Timed(
                call, rounds=200, quick_rounds=20, warmup=5, check=_check_mark("snakepit hand-off")
            )
        finally:
            held.clear()
            zero_copy.trim()  # give the region back before the peers run

    @contextlib.contextmanager
    def pickled(env: Env) -> Iterator[Timed]:
        executor, plain = env.peer(), _plain_bytes(nbytes)

        def call() -> Any:
            return executor.submit(tasks.first_element, plain).result()

        yield Timed(
            call, rounds=peer_rounds, quick_rounds=peer_quick, check=_check_mark("pickle hand-off")
        )

    @contextlib.contextmanager
    def segment(env: Env) -> Iterator[Timed]:
        executor, plain = env.peer(), _plain_bytes(nbytes)

        def call() -> Any:
            """What a user of multiprocessing.shared_memory does: create, copy, call, unlink."""
            segment = shared_memory.SharedMemory(create=True, size=plain.nbytes)
            try:
                view: np.ndarray[Any, Any] = np.ndarray(plain.shape, plain.dtype, segment.buf)
                view[...] = plain
                del view  # close() refuses while the buffer is exported
                return executor.submit(
                    tasks.shm_first_element, segment.name, plain.shape, plain.dtype.str
                ).result()
            finally:
                segment.close()
                segment.unlink()

        yield Timed(
            call,
            rounds=peer_rounds,
            quick_rounds=peer_quick,
            check=_check_mark("shared_memory hand-off"),
        )

    @contextlib.contextmanager
    def noop(env: Env) -> Iterator[Timed]:
        """The same pool's no-op call, timed in the same loop (turn about)."""
        yield noop_calls(env.pool(), rounds=200, quick_rounds=20, warmup=5)

    @contextlib.contextmanager
    def fresh(env: Env) -> Iterator[Timed]:
        """The same pool, a plain (not shared) array of the same size."""
        pool, plain = env.pool(), _plain_bytes(nbytes)
        yield Timed(
            pool.call,
            (tasks.first_element, plain),
            rounds=200,
            quick_rounds=20,
            warmup=5,
            check=_check_mark("fresh hand-off"),
        )

    too_slow = None
    if nbytes >= PICKLE_LIMIT:
        too_slow = f"pickling {label} through ProcessPoolExecutor's pipe takes seconds a round"
    targets: tuple[Target, ...] = ()
    if nbytes == KIB:
        targets = (
            vs(name, "shared arg 1 KiB, read one", None, peer="pickle"),
            Target(
                "call with a shared 1 KiB array / no-op call",
                (name, "snakepit"),
                (name, "noop"),
                1.25,
                "within 1.25x",
            ),
            Target(
                "call with a fresh 1 KiB array / no-op call",
                (name, "fresh"),
                (name, "noop"),
                None,
            ),
        )
    elif nbytes == 100 * MIB:
        targets = (
            vs(name, "shared arg 100 MiB, read one", 1 / 100, ">= 100x faster", peer="pickle"),
        )
    elif nbytes == GIB:
        targets = (
            Target(
                "snakepit shared arg 1 GiB / 1 KiB",
                (name, "snakepit"),
                ("zero-copy-1KiB", "snakepit"),
                2.0,
                "within 2x",
            ),
        )
    return Case(
        name,
        f"zero-copy hand-off {label}",
        (
            Impl("snakepit", "snakepit.Pool, array from snakepit.zeros", own),
            Impl("pickle", "pickle via ProcessPoolExecutor", pickled, skip=too_slow),
            Impl("shared_memory", "multiprocessing.shared_memory + ProcessPoolExecutor", segment),
            *(
                [
                    Impl("noop", "the same snakepit.Pool, a no-op call (interleaved)", noop),
                    Impl("fresh", "the same snakepit.Pool, a plain numpy array", fresh),
                ]
                if nbytes == KIB
                else []
            ),
        ),
        group="zero-copy",
        nbytes=nbytes,
        interleave=20 if small else 1,
        workers=WORKERS,
        skip=lambda: shm_skip_reason(nbytes, shm_free()),
        targets=targets,
    )


def fresh_arg_case() -> Case:
    """A plain (not shared) 100 MiB array as the argument; the worker returns its sum."""
    nbytes = 100 * MIB

    def checker(source: np.ndarray[Any, Any]) -> Any:
        expected = float(source.sum())

        def check(result: float) -> None:
            if not math.isclose(result, expected, rel_tol=1e-4):
                raise BenchError(f"sum: got {result}, expected {expected}")

        return check

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        source = _plain_floats(nbytes)
        yield Timed(
            env.pool().call,
            (tasks.total, source),
            rounds=20,
            quick_rounds=5,
            warmup=2,
            check=checker(source),
        )

    @contextlib.contextmanager
    def peer(env: Env) -> Iterator[Timed]:
        executor, source = env.peer(), _plain_floats(nbytes)

        def call() -> Any:
            return executor.submit(tasks.total, source).result()

        yield Timed(call, rounds=8, quick_rounds=3, warmup=1, check=checker(source))

    name = "fresh-arg-100MiB"
    return Case(
        name,
        "fresh 100 MiB numpy argument, worker sums it",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl("peer", "pickle via ProcessPoolExecutor", peer),
        ),
        nbytes=nbytes,
        workers=WORKERS,
        interleave=1,
        targets=(vs(name, "fresh 100 MiB arg, sum", 1 / 5, ">= 5x faster"),),
    )


def echo_case(nbytes: int) -> Case:
    """The worker returns a copy of a plain array of ``nbytes`` (float32)."""
    label = size_label(nbytes)
    name = f"echo-{size_label(nbytes, '')}"

    def checker(source: np.ndarray[Any, Any]) -> Any:
        def check(result: object) -> None:
            if not (
                isinstance(result, np.ndarray)
                and result.shape == source.shape
                and result[-1] == source[-1]
            ):
                raise BenchError(f"echo returned {type(result).__name__}, not the array")

        return check

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        pool, source = env.pool(), np.arange(nbytes // 4, dtype=np.float32)
        last = pool.call(tasks.echo, source)
        if not (snakepit.is_shared(last) and np.array_equal(last, source)):
            raise BenchError("snakepit's echo did not come back through shared memory intact")
        del last
        try:
            yield Timed(
                pool.call, (tasks.echo, source), rounds=20, quick_rounds=5, check=checker(source)
            )
        finally:
            zero_copy.trim()

    @contextlib.contextmanager
    def peer(env: Env) -> Iterator[Timed]:
        executor, source = env.peer(), np.arange(nbytes // 4, dtype=np.float32)

        def call() -> Any:
            return executor.submit(tasks.echo, source).result()

        expect(np.array_equal(call(), source), True, "the peer's echo")
        yield Timed(call, rounds=20, quick_rounds=5, check=checker(source))

    targets: tuple[Target, ...] = ()
    if nbytes == 100 * MIB:
        targets = (vs(name, "echo 100 MiB", 1 / 5, ">= 5x faster", peer="pickle"),)
    return Case(
        name,
        f"echo of a {label} numpy array",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl("pickle", "pickle via ProcessPoolExecutor", peer),
        ),
        group="echo",
        nbytes=nbytes,
        workers=WORKERS,
        interleave=1,
        targets=targets,
    )


# --------------------------------------------------------------- catalogue

INLINE_SIZES = (MIB, 16 * MIB, 64 * MIB, 256 * MIB)

#: Every case, by the ``bench/test_<suite>.py`` module that measures it.
SUITES: dict[str, tuple[Case, ...]] = {
    "zero_copy": (*(alloc_case(n) for n in (KIB, MIB, 100 * MIB)), share_case()),
    "pool": (
        noop_case(),
        map_case(),
        *(zero_copy_case(n) for n in DEFAULT_SIZES),
        fresh_arg_case(),
        echo_case(100 * MIB),
    ),
    "lifecycle": lifecycle_cases(),
    "large": large_cases(),
    "load": (*load_cases(), paced_case()),
    "torch": torch_cases(),
    "arrow": arrow_cases(),
    "inline": (
        *(inline_case("bytes-arg", n) for n in INLINE_SIZES),
        *(inline_case("bytes-result", n) for n in INLINE_SIZES),
        inline_case("arrays-arg", 32 * MIB),
    ),
    "telemetry": _local.telemetry_cases(),
    "telemetry_overhead": _local.overhead_cases(),
    "hardware": _local.hardware_cases(),
    "ray": ray_cases(),
}
CASES: tuple[Case, ...] = tuple(case for suite in SUITES.values() for case in suite)
#: Every target of the catalogue, in its order (what ``bench/report.py`` prints).
TARGETS: tuple[Target, ...] = tuple(target for case in CASES for target in case.targets)


def cli_cases(sizes: tuple[int, ...], echo_bytes: int, quick: bool = False) -> list[Case]:
    """The cases of ``snakepit bench``: zero-copy at ``sizes``, calls, crashes, telemetry.

    Without ``quick`` also start-up and respawn (first: the fork peer needs a
    process with no pool threads yet), spinning under load, throughput and,
    when ``sizes`` holds 1 GiB, the 1 GiB fresh argument and echo.
    """
    by_name = {case.name: case for case in CASES}
    first = [] if quick else [by_name["startup"], by_name["crash-recovery-respawn"]]
    more = [] if quick else [by_name["spin-loaded"], by_name["throughput-4-threads"]]
    if not quick and GIB in sizes:
        more += [by_name["fresh-arg-1GiB"], by_name["echo-shared-1GiB"]]
    return [
        *first,
        *(zero_copy_case(n) for n in sorted(sizes)),
        by_name["noop"],
        echo_case(echo_bytes),
        by_name["crash-recovery"],
        *more,
        by_name["telemetry-no-handler"],
        by_name["telemetry-one-handler"],
    ]
