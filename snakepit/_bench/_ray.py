"""The catalogue's Ray-backend cases: ``Pool(backend="ray")`` against raw Ray, same run.

Part of :mod:`snakepit._bench.cases` (suite ``ray``, ``bench/test_ray.py``;
``snakepit bench --backend ray``). Three comparisons, each against a raw
Ray actor and a raw Ray task started in the same Ray session:

- :func:`noop_case`: an empty call's round trip (goal: within 1.2x of a raw
  Ray actor method call);
- :func:`fresh_arg_case`: a fresh 100 MiB numpy argument, the worker sums
  it, the host on the caller's node (goal: at least 2x faster than
  ``ray.put`` + a task);
- :func:`crash_case`: a call that segfaults its worker, then the next good
  call (goal: under 50 ms, and at least 10x faster than Ray's own actor
  restart with ``max_restarts=1``).

Ray is started on loopback once per :class:`~snakepit._bench._model.Env`
(:func:`snakepit._bench._peers.env_ray`). Each implementation starts what it
measures and stops it when it is done: a pool's hosts hold the session's
CPUs while they live, and a raw Ray task needs one to be scheduled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import snakepit
from snakepit import zero_copy
from snakepit._bench import tasks
from snakepit._bench._lifecycle import pool_accepts, segfault_then_pid
from snakepit._bench._model import (
    MIB,
    WORKERS,
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Timed,
    expect,
    seconds,
    shm_free,
    shm_skip_reason,
    vs,
    wait_until_idle,
)
from snakepit._bench._peers import RAY, RaySession, env_ray

#: The issue's goals: no-op within 1.2x of a raw Ray actor call, a fresh
#: 100 MiB argument at least 2x faster than ``ray.put`` + a task, crash to
#: the next good call under 50 ms and 10x faster than Ray's actor restart.
NOOP_VS_ACTOR = 1.2
FRESH_VS_PUT_TASK = 0.5
CRASH_GOAL = 0.050
CRASH_VS_ACTOR_RESTART = 0.1
#: Seconds a raw Ray actor may take to come back after a crash before the
#: round fails (Ray took about 2 s on a loaded 2-core machine).
RESTART_DEADLINE = 60.0
FRESH_BYTES = 100 * MIB
#: A no-op's request and reply through Ray are 65 and 43 bytes: the raw
#: actor peers that carry data both ways send this much.
REQUEST_BYTES = bytes(64)


def backend_missing() -> str | None:
    """Why ``Pool(backend="ray")`` cannot be measured here, or None."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed"
    if not pool_accepts("backend") or importlib.util.find_spec("snakepit.backends") is None:
        return "this snakepit has no Ray backend (Pool(backend='ray'))"
    return None


def host_concurrency() -> int:
    """The ``max_concurrency`` the Ray backend gives each host actor by default."""
    from snakepit.backends._ray import RayBackend

    concurrency: int = RayBackend().host_options("bench")["max_concurrency"]
    return concurrency


@contextlib.contextmanager
def ray_pool(env: Env, **pool_kwargs: Any) -> Iterator[snakepit.Pool]:
    """A warm ``Pool(backend="ray")`` of :data:`WORKERS` in the bench's Ray session."""
    env_ray(env)  # the pool uses the Ray already started (on loopback)
    with snakepit.Pool(workers=WORKERS, backend="ray", **pool_kwargs) as pool:
        for _ in range(2 * WORKERS):
            expect(pool.call(tasks.noop), None, "warm-up call")
        yield pool


class RawActor:
    """What a raw Ray actor runs in the peers: the same tasks as the pool's workers."""

    def noop(self) -> None:
        """Do nothing."""
        return tasks.noop()

    def total(self, array: np.ndarray[Any, Any]) -> float:
        """The sum of ``array``."""
        return tasks.total(array)

    def echo_bytes(self, data: bytes) -> bytes:
        """``data`` back: a call that carries a request and a reply, as a host's does."""
        return data

    def pid(self) -> int:
        """This actor's process id."""
        return tasks.pid_after(0.0)

    def segfault(self) -> None:
        """Crash this actor's process with SIGSEGV."""
        tasks.segfault()


@contextlib.contextmanager
def raw_actor(session: RaySession, **options: Any) -> Iterator[Any]:
    """A started raw Ray actor (``options`` for ``.options``), killed on exit."""
    ray = session.ray
    cls = ray.remote(RawActor)
    actor = cls.options(max_task_retries=0, **options).remote()
    try:
        ray.get(actor.noop.remote(), timeout=RESTART_DEADLINE)
        yield actor
    finally:
        ray.kill(actor, no_restart=True)


# --------------------------------------------------------------------- no-op


def _check_none(result: object) -> None:
    expect(result, None, "no-op call")


def _noop_timed(call: Callable[[], object]) -> Timed:
    return Timed(call, rounds=200, quick_rounds=30, warmup=20, check=_check_none)


def noop_case() -> Case:
    """An empty call's round trip: the Ray backend, a raw actor, a raw task, the local pool."""
    name = "ray-noop"

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        with ray_pool(env) as pool:
            yield _noop_timed(lambda: pool.call(tasks.noop))

    @contextlib.contextmanager
    def actor(env: Env) -> Iterator[Timed]:
        session = env_ray(env)
        with raw_actor(session) as target:
            yield _noop_timed(lambda: session.ray.get(target.noop.remote()))

    def actor_with_bytes(threaded: bool) -> Prepare:
        @contextlib.contextmanager
        def prepare(env: Env) -> Iterator[Timed]:
            session = env_ray(env)
            options = {"max_concurrency": host_concurrency()} if threaded else {}
            with raw_actor(session, **options) as target:

                def call() -> None:
                    answer = session.ray.get(target.echo_bytes.remote(REQUEST_BYTES))
                    expect(answer, REQUEST_BYTES, "the raw actor's answer")

                yield _noop_timed(call)

        return prepare

    @contextlib.contextmanager
    def task(env: Env) -> Iterator[Timed]:
        session = env_ray(env)
        yield _noop_timed(lambda: session.call(tasks.noop))

    @contextlib.contextmanager
    def local(env: Env) -> Iterator[Timed]:
        pool = env.pool()
        yield _noop_timed(lambda: pool.call(tasks.noop))

    return Case(
        name,
        "no-op call round trip, Ray backend (host on the caller's node)",
        (
            Impl("snakepit", "snakepit.Pool(backend='ray')", own, requires=RAY),
            Impl("ray-actor", "raw Ray actor method, ray.get", actor, requires=RAY),
            Impl(
                "ray-actor-bytes",
                f"raw Ray actor method, {len(REQUEST_BYTES)} B argument and result",
                actor_with_bytes(threaded=False),
                requires=RAY,
            ),
            Impl(
                "ray-actor-threaded",
                f"raw threaded Ray actor (as a host), {len(REQUEST_BYTES)} B both ways",
                actor_with_bytes(threaded=True),
                requires=RAY,
            ),
            Impl("ray-task", "raw Ray task, ray.get", task, requires=RAY),
            Impl("local", "snakepit.Pool (local backend)", local),
        ),
        group="ray-noop",
        workers=WORKERS,
        skip=backend_missing,
        targets=(
            vs(
                name,
                "Ray backend no-op / raw Ray actor call",
                NOOP_VS_ACTOR,
                "within 1.2x",
                peer="ray-actor",
            ),
            # What any call that carries a request costs in Ray, and a
            # threaded actor's hand-off on top: the floor of the host's way.
            vs(
                name,
                "Ray backend no-op / raw actor, bytes both ways",
                None,
                peer="ray-actor-bytes",
            ),
            vs(
                name,
                "Ray backend no-op / raw threaded actor, bytes both ways",
                None,
                peer="ray-actor-threaded",
            ),
            vs(name, "Ray backend no-op / raw Ray task", None, peer="ray-task"),
            vs(name, "Ray backend no-op / local pool", None, peer="local"),
        ),
    )


# -------------------------------------------------------- fresh 100 MiB arg


def _fresh_source() -> np.ndarray[Any, Any]:
    """100 MiB of float32 with distinct values (a plain array, not in shared memory)."""
    return np.random.default_rng(0).random(FRESH_BYTES // 4, dtype=np.float32)


def _sum_checker(source: np.ndarray[Any, Any]) -> Callable[[float], None]:
    expected = float(source.sum())

    def check(result: float) -> None:
        if not math.isclose(result, expected, rel_tol=1e-4):
            raise BenchError(f"sum: got {result}, expected {expected}")

    return check


def _fresh_timed(call: Callable[[], object], source: np.ndarray[Any, Any]) -> Timed:
    return Timed(call, rounds=20, quick_rounds=5, warmup=2, check=_sum_checker(source))


def fresh_arg_case() -> Case:
    """A fresh 100 MiB numpy argument, the worker sums it: Ray backend against ``ray.put``."""
    name = "ray-fresh-arg-100MiB"

    @contextlib.contextmanager
    def own(env: Env) -> Iterator[Timed]:
        source = _fresh_source()
        try:
            with ray_pool(env) as pool:
                yield _fresh_timed(lambda: pool.call(tasks.total, source), source)
        finally:
            zero_copy.trim()

    @contextlib.contextmanager
    def put_task(env: Env) -> Iterator[Timed]:
        session, source = env_ray(env), _fresh_source()
        ray = session.ray
        yield _fresh_timed(lambda: session.call(tasks.total, ray.put(source)), source)

    @contextlib.contextmanager
    def put_actor(env: Env) -> Iterator[Timed]:
        session, source = env_ray(env), _fresh_source()
        ray = session.ray
        with raw_actor(session) as target:
            yield _fresh_timed(lambda: ray.get(target.total.remote(ray.put(source))), source)

    return Case(
        name,
        "fresh 100 MiB numpy argument, worker sums it, Ray backend (caller's node)",
        (
            Impl("snakepit", "snakepit.Pool(backend='ray')", own, requires=RAY),
            Impl("ray-task", "raw Ray: ray.put(arr) + task, ray.get", put_task, requires=RAY),
            Impl("ray-actor", "raw Ray: ray.put(arr) + actor method", put_actor, requires=RAY),
        ),
        group="ray-fresh",
        nbytes=FRESH_BYTES,
        workers=WORKERS,
        skip=lambda: backend_missing() or shm_skip_reason(FRESH_BYTES, shm_free()),
        targets=(
            vs(
                name,
                "Ray backend fresh 100 MiB / ray.put + task",
                FRESH_VS_PUT_TASK,
                ">= 2x faster",
                peer="ray-task",
            ),
            vs(name, "Ray backend fresh 100 MiB / ray.put + actor", None, peer="ray-actor"),
        ),
    )


# ------------------------------------------------------------------ crashes


def _own_crash(env: Env) -> Iterator[Timed]:
    # Crashes are the point: never mark the slot unhealthy, never back off.
    with ray_pool(env, worker_max_crashes=1_000_000, restart_backoff=(0.0, 0.0)) as pool:

        def crash_then_call() -> tuple[str, int]:
            return segfault_then_pid(pool)

        def check(result: tuple[str, int]) -> None:
            expect(result[0], "segfault", "Ray backend crash")
            if result[1] <= 0:
                raise BenchError(f"the call after the crash answered {result[1]!r}")

        yield Timed(
            crash_then_call,
            rounds=10,
            quick_rounds=3,
            warmup=1,
            setup=lambda: wait_until_idle(pool),
            check=check,
        )
        wait_until_idle(pool)


def _actor_restart(env: Env) -> Iterator[Timed]:
    """Ray's own recovery: an actor with ``max_restarts=1`` crashes and is restarted."""
    session = env_ray(env)
    ray = session.ray
    from ray.exceptions import ActorUnavailableError, RayActorError

    actors: list[Any] = []

    def setup() -> None:
        while actors:
            ray.kill(actors.pop(), no_restart=True)
        actor = ray.remote(RawActor).options(max_restarts=1, max_task_retries=0).remote()
        ray.get(actor.noop.remote(), timeout=RESTART_DEADLINE)
        actors.append(actor)

    def crash_then_call() -> tuple[bool, int]:
        actor = actors[-1]
        try:
            ray.get(actor.segfault.remote(), timeout=RESTART_DEADLINE)
        except RayActorError:
            raised = True
        else:
            raise BenchError("the segfaulting actor call returned")
        deadline = time.monotonic() + RESTART_DEADLINE
        while True:
            try:
                return raised, int(ray.get(actor.pid.remote(), timeout=RESTART_DEADLINE))
            except ActorUnavailableError:  # still restarting: what a user must wait out
                if time.monotonic() > deadline:
                    raise BenchError("the Ray actor did not come back after its crash") from None
                time.sleep(0.001)

    def check(result: tuple[bool, int]) -> None:
        if not (result[0] and result[1] > 0):
            raise BenchError(f"the restarted Ray actor answered {result!r}")

    try:
        yield Timed(crash_then_call, rounds=5, quick_rounds=1, warmup=0, setup=setup, check=check)
    finally:
        while actors:
            ray.kill(actors.pop(), no_restart=True)


def _task_crash(env: Env) -> Iterator[Timed]:
    """A raw Ray task that segfaults its worker (no retry), then the next task."""
    session = env_ray(env)
    from ray.exceptions import WorkerCrashedError as RayWorkerCrashedError

    def crash_then_call() -> tuple[bool, int]:
        try:
            session.call(tasks.segfault)
        except RayWorkerCrashedError:
            raised = True
        else:
            raise BenchError("the segfaulting Ray task returned")
        return raised, int(session.call(tasks.pid_after, 0.0))

    def check(result: tuple[bool, int]) -> None:
        if not (result[0] and result[1] > 0):
            raise BenchError(f"the Ray task after the crash answered {result!r}")

    yield Timed(crash_then_call, rounds=5, quick_rounds=1, warmup=0, check=check)


def crash_case() -> Case:
    """From a call that segfaults its worker to the next good call, Ray backend and raw Ray."""
    name = "ray-crash-recovery"
    wrap: Callable[[Callable[[Env], Iterator[Timed]]], Prepare] = contextlib.contextmanager
    return Case(
        name,
        "crash recovery, Ray backend: segfault to next good call",
        (
            Impl(
                "snakepit",
                "snakepit.Pool(backend='ray') (host replaces the worker)",
                wrap(_own_crash),
                requires=RAY,
            ),
            Impl(
                "ray-actor-restart",
                "raw Ray actor, max_restarts=1 (Ray restarts it)",
                wrap(_actor_restart),
                requires=RAY,
            ),
            Impl(
                "ray-task",
                "raw Ray task (max_retries=0), then the next task",
                wrap(_task_crash),
                requires=RAY,
            ),
        ),
        group="ray-crash",
        workers=WORKERS,
        skip=backend_missing,
        targets=(
            seconds(name, "Ray backend crash to next success (median)", CRASH_GOAL, "< 50 ms"),
            vs(
                name,
                "Ray backend crash recovery / Ray actor restart",
                CRASH_VS_ACTOR_RESTART,
                ">= 10x faster",
                peer="ray-actor-restart",
            ),
            vs(name, "Ray backend crash recovery / raw Ray task crash", None, peer="ray-task"),
        ),
    )


def ray_cases() -> tuple[Case, ...]:
    """The Ray-backend cases: no-op, fresh 100 MiB argument, crash to next success."""
    return (noop_case(), fresh_arg_case(), crash_case())
