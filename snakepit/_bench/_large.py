"""The catalogue's 1 GiB cases: a fresh argument and an echo, against the copy floor and Ray.

Part of :mod:`snakepit._bench.cases` (suite ``large``, one bench module, so
Ray starts once per session). Heavy: under ``pytest --benchmark-disable``
they run only with ``SNAKEPIT_BENCH_HEAVY=1``.

The floor is ``np.copyto`` into warm memory (pages already faulted in):
handing a fresh array to another process needs at least one copy of it, and
so does an echo (the worker writes its result once). For the fresh argument
the floor leaves out the worker's sum, and its destination is numpy's (huge
pages where transparent huge pages are on, which ``/dev/shm`` may not have):
docs/benchmarks.md, "The 1 GiB fresh argument", says how to read the ratio.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

import snakepit
from snakepit import zero_copy
from snakepit._bench import tasks
from snakepit._bench._model import (
    GIB,
    MARK,
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Timed,
    shm_free,
    shm_skip_reason,
    size_label,
    vs,
)
from snakepit._bench._peers import RAY, env_ray

ROUNDS, QUICK_ROUNDS = 10, 3


def _source(nbytes: int) -> np.ndarray[Any, Any]:
    """Plain float32 (as numpy allocates it: not page-aligned), every page touched, MARK first."""
    array = np.ones(nbytes // 4, dtype=np.float32)
    array[0] = MARK
    return array


def _sum_checker(nbytes: int) -> Any:
    expected = float(nbytes // 4 - 1 + MARK)

    def check(result: float) -> None:
        if not math.isclose(result, expected, rel_tol=1e-4):
            raise BenchError(f"sum: got {result}, expected {expected}")

    return check


def _echo_checker(nbytes: int) -> Any:
    def check(result: object) -> None:
        if not (
            isinstance(result, np.ndarray)
            and result.shape == (nbytes // 4,)
            and float(result[0]) == MARK
            and float(result[-1]) == 1.0
        ):
            raise BenchError(f"echo returned {type(result).__name__}, not the array")

    return check


def _copy_floor(nbytes: int, then_sum: bool = False) -> Prepare:
    """``np.copyto`` of a fresh array into a warm one (``then_sum``: and sum the copy)."""

    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        source = _source(nbytes)
        destination = np.empty_like(source)
        destination.fill(0.0)  # fault the pages in, as a warm arena block is

        def copy() -> Any:
            np.copyto(destination, source)
            return float(destination.sum()) if then_sum else destination

        check = _sum_checker(nbytes) if then_sum else _echo_checker(nbytes)
        yield Timed(copy, rounds=ROUNDS, quick_rounds=QUICK_ROUNDS, warmup=1, check=check)

    return prepare


def fresh_large_case(nbytes: int = GIB) -> Case:
    """A fresh (not shared) array of ``nbytes`` as the argument; the worker sums it."""
    name = f"fresh-arg-{size_label(nbytes, '')}"
    label = f"fresh {size_label(nbytes)} arg, sum"

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        pool, source = env.pool(), _source(nbytes)
        try:
            yield Timed(
                pool.call,
                (tasks.total, source),
                rounds=ROUNDS,
                quick_rounds=QUICK_ROUNDS,
                warmup=1,
                check=_sum_checker(nbytes),
            )
        finally:
            zero_copy.trim()

    @contextlib.contextmanager
    def ray(env: Env) -> Iterator[Timed]:
        session, source = env_ray(env), _source(nbytes)
        yield Timed(
            session.call,
            (tasks.total, source),
            rounds=ROUNDS,
            quick_rounds=QUICK_ROUNDS,
            warmup=1,
            check=_sum_checker(nbytes),
        )

    return Case(
        name,
        f"fresh {size_label(nbytes)} numpy argument, worker sums it",
        (
            Impl("snakepit", "snakepit.Pool", own),
            Impl("copy", "np.copyto into warm memory (floor)", _copy_floor(nbytes)),
            Impl("copy-sum", "np.copyto into warm memory, then sum", _copy_floor(nbytes, True)),
            Impl("ray", "Ray: task(arr), ray.get", ray, requires=RAY, alone=True),
        ),
        group="large-fresh",
        nbytes=nbytes,
        interleave=1,
        skip=lambda: shm_skip_reason(nbytes, shm_free()),
        heavy=True,
        targets=(
            vs(name, f"{label} / np.copyto", 1.2, "within 1.2x", peer="copy"),
            vs(name, f"{label} / np.copyto + sum", None, peer="copy-sum"),
            vs(name, f"{label} / Ray", 1.0, "faster than Ray", peer="ray"),
        ),
    )


def echo_shared_case(nbytes: int = GIB) -> Case:
    """The worker returns a copy of an array already in shared memory (Ray: ``ray.put``)."""
    name = f"echo-shared-{size_label(nbytes, '')}"
    label = f"echo of shared {size_label(nbytes)}"
    check = _echo_checker(nbytes)

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        pool = env.pool()
        held = [snakepit.share(_source(nbytes))]
        if not snakepit.is_shared(held[0]):
            raise BenchError("share() did not put the array in shared memory")
        try:
            yield Timed(
                lambda: pool.call(tasks.echo, held[0]),
                rounds=ROUNDS,
                quick_rounds=QUICK_ROUNDS,
                warmup=1,
                check=check,
            )
        finally:
            held.clear()
            zero_copy.trim()

    @contextlib.contextmanager
    def ray(env: Env) -> Iterator[Timed]:
        session = env_ray(env)
        refs = [session.ray.put(_source(nbytes))]
        try:
            yield Timed(
                lambda: session.call(tasks.echo, refs[0]),
                rounds=ROUNDS,
                quick_rounds=QUICK_ROUNDS,
                warmup=1,
                check=check,
            )
        finally:
            refs.clear()  # frees the object in Ray's store

    return Case(
        name,
        f"echo of a {size_label(nbytes)} array already in shared memory",
        (
            Impl("snakepit", "snakepit.Pool, array from snakepit.share", own),
            Impl("copy", "np.copyto into warm memory (floor)", _copy_floor(nbytes)),
            Impl(
                "ray",
                "Ray: task(ray.put ref) returns a copy, ray.get",
                ray,
                requires=RAY,
                alone=True,
            ),
        ),
        group="large-echo",
        nbytes=nbytes,
        interleave=1,
        skip=lambda: shm_skip_reason(nbytes, shm_free()),
        heavy=True,
        targets=(
            vs(name, f"{label} / np.copyto", 2.0, "within 2x", peer="copy"),
            vs(name, f"{label} / Ray", 1.0, "faster than Ray", peer="ray"),
        ),
    )


def large_cases() -> tuple[Case, ...]:
    """The 1 GiB fresh argument and the 1 GiB echo of a shared array."""
    return (fresh_large_case(), echo_shared_case())
