"""The catalogue's pool-call cases with a twist: crashes, and payloads sent inline.

Part of :mod:`snakepit._bench.cases` (which lists them in ``SUITES``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

import snakepit
from snakepit._bench import tasks
from snakepit._bench._model import (
    MIB,
    WORKERS,
    BenchError,
    Case,
    Env,
    Impl,
    Prepare,
    Target,
    Timed,
    expect,
    peer_executor,
    size_label,
    vs,
    wait_until_idle,
    warm,
)
from snakepit.errors import WorkerCrashedError

# ------------------------------------------------------------------ crashes


def _crashy_recovery(workers: int, rounds: int, quick: int) -> Prepare:
    """snakepit's side of a crash case: segfault a worker, then the next good call."""

    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        # Crashes are the point: never mark the slot unhealthy, never back off.
        with snakepit.Pool(
            workers=workers, worker_max_crashes=1_000_000, restart_backoff=(0.0, 0.0)
        ) as crashy:
            warm(crashy.submit, workers)

            def crash_then_call() -> tuple[str, int]:
                try:
                    crashy.call(tasks.segfault)
                except WorkerCrashedError as exc:
                    kind = str(exc.exit_kind)
                else:
                    raise BenchError("the segfaulting call returned")
                return kind, crashy.call(tasks.pid_after, 0.0)

            def check(result: tuple[str, int]) -> None:
                expect(result[0], "segfault", "snakepit crash")
                if result[1] not in crashy.worker_pids():
                    raise BenchError("the call after the crash ran on no current worker")

            yield Timed(
                crash_then_call,
                (),
                rounds,
                quick,
                1,
                setup=lambda: wait_until_idle(crashy),
                check=check,
            )
            wait_until_idle(crashy)
            if crashy.stats()["crashes"] < 1:
                raise BenchError("no crash was counted")

    return prepare


@contextlib.contextmanager
def _peer_rebuild(env: Env) -> Iterator[Timed]:
    """The peer's only recovery: shut the broken executor down, start another."""
    victims: list[ProcessPoolExecutor] = []

    def setup() -> None:
        # Every executor is warm (all workers up) before it is crashed.
        if not victims:
            victims.append(peer_executor())
        warm(victims[-1].submit)

    def crash_then_call() -> tuple[bool, int]:
        broken = victims.pop()
        try:
            broken.submit(tasks.segfault).result()
        except BrokenProcessPool:
            raised = True
        else:
            raise BenchError("the segfaulting call returned")
        finally:
            broken.shutdown(wait=True)
        fresh = peer_executor()
        victims.append(fresh)
        return raised, fresh.submit(tasks.pid_after, 0.0).result()

    def check(result: tuple[bool, int]) -> None:
        if not (result[0] and result[1] > 0):
            raise BenchError(f"the rebuilt executor answered {result!r}")

    try:
        yield Timed(crash_then_call, (), 5, 1, 0, setup=setup, check=check)
    finally:
        while victims:
            victims.pop().shutdown(wait=True, cancel_futures=True)


def peer_stays_broken() -> bool:
    """Whether a ``ProcessPoolExecutor`` refuses every call after one worker segfaults."""
    with peer_executor() as executor:
        warm(executor.submit)
        with contextlib.suppress(BrokenProcessPool):
            executor.submit(tasks.segfault).result()
        try:
            executor.submit(tasks.noop).result()
        except BrokenProcessPool:
            return True
        return False


def crash_case() -> Case:
    """From submitting a call that segfaults its worker to the next successful call."""
    name = "crash-recovery"
    return Case(
        name,
        "crash recovery: segfault to next good call",
        (
            Impl("snakepit", "snakepit.Pool (replaces the worker)", _crashy_recovery(2, 10, 3)),
            Impl("ppe-rebuild", "ProcessPoolExecutor: shut down + new executor", _peer_rebuild),
        ),
        workers=WORKERS,
        targets=(
            Target("crash recovery, 2 workers (median)", (name, "snakepit"), None, 0.1, "< 100 ms"),
            vs(name, "crash recovery / peer rebuilds executor", None, peer="ppe-rebuild"),
        ),
    )


def respawn_case() -> Case:
    """The crash case with one worker: every recovery waits for a new process."""
    name = "crash-recovery-respawn"
    return Case(
        name,
        "crash recovery, 1 worker (respawn)",
        (Impl("snakepit", "snakepit.Pool (respawns the worker)", _crashy_recovery(1, 5, 2)),),
        workers=1,
        targets=(Target("crash + respawn, 1 worker (median)", (name, "snakepit"), None, None),),
    )


# ------------------------------------------------------------------- inline


def inline_case(kind: str, nbytes: int) -> Case:
    """A payload that travels in the frame, not through shared memory; 1 worker each.

    ``kind``: ``bytes-arg`` (a ``bytes`` argument; the worker returns its
    length), ``bytes-result`` (the worker returns that many bytes) or
    ``arrays-arg`` (64 float32 arrays of ``nbytes / 64``, each below the
    shared-memory threshold).
    """
    name = f"inline-{kind}-{size_label(nbytes, '')}"
    rounds = 5 if nbytes >= 64 * MIB else 20

    def task() -> tuple[Any, tuple[Any, ...]]:
        if kind == "bytes-result":
            return tasks.make_bytes, (nbytes,)
        if kind == "bytes-arg":
            return tasks.size_of, (bytes(nbytes),)
        count = 64
        items = [np.full(nbytes // count // 4, i, dtype=np.float32) for i in range(count)]
        if any(snakepit.is_shared(item) for item in items):
            raise BenchError("an inline array went to shared memory")
        return tasks.size_of, (items,)

    def check(result: Any) -> None:
        size = len(result) if kind == "bytes-result" else result
        if kind == "bytes-result" and type(result) is not bytes:
            raise BenchError(f"got {type(result).__name__}, not bytes")
        expect(size, nbytes, "payload size")

    def prepare(submitter: str) -> Prepare:
        @contextlib.contextmanager
        def run(env: Env) -> Iterator[Timed]:
            submit = env.submit(submitter, 1)
            expect(submit(tasks.size_of, b"warm").result(), 4, "warm-up")
            fn, args = task()

            def call() -> Any:
                return submit(fn, *args).result()

            yield Timed(call, (), rounds, 3, 1, check=check)

        return run

    what = {"bytes-arg": "bytes argument", "bytes-result": "bytes result"}.get(
        kind, f"64 arrays of {size_label(nbytes // 64)} argument"
    )
    label = f"inline {what} {size_label(nbytes)}" if kind != "arrays-arg" else f"inline {what}"
    return Case(
        name,
        label,
        (
            Impl("snakepit", "snakepit.Pool", prepare("snakepit")),
            Impl("peer", "ProcessPoolExecutor", prepare("peer")),
        ),
        group=f"inline-{kind}",
        nbytes=nbytes,
        workers=1,
        targets=(vs(name, label, 1.0, "no slower"),),
    )
