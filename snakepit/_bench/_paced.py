"""Calls at a caller's pace: a short function, the caller working between calls.

Part of :mod:`snakepit._bench.cases` (suite ``load``). Back-to-back no-op
calls are the case polling was made for; a service's calls do something
(:data:`RUN_SECONDS` here) and its caller does something between two
(:data:`PAUSE_SECONDS`, untimed). Waits that long are where a poll of
``spin_seconds`` alone runs out and a process sleeps: a wake-up on the
2-core VM cost 150-250 µs. Polls that cover a short expected wait (see
``protocol.poll_window``) are measured here against ``spin_seconds=0`` of
the same pool and against ProcessPoolExecutor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import snakepit
from snakepit._bench import tasks
from snakepit._bench._lifecycle import pool_accepts
from snakepit._bench._model import WORKERS, Case, Env, Impl, Prepare, Timed, expect, vs, warm

#: What the function does per call, and what the caller does between two.
RUN_SECONDS = 0.0003
PAUSE_SECONDS = 0.0006


def _pause() -> None:
    tasks.busy(PAUSE_SECONDS)  # the caller's own work: steadier than sleeping


def _timed(call: Callable[[], None]) -> Timed:
    return Timed(
        call,
        rounds=200,
        quick_rounds=20,
        warmup=20,
        setup=_pause,
        check=lambda result: expect(result, None, "the paced call's result"),
    )


def _own(**pool_kwargs: object) -> Prepare:
    @contextlib.contextmanager
    def prepare(env: Env) -> Iterator[Timed]:
        # A pool of its own: what its polls learn stays with this case.
        with snakepit.Pool(workers=WORKERS, **pool_kwargs) as pool:  # type: ignore[arg-type]
            expect(len(warm(pool.submit, WORKERS)), WORKERS, "workers answering")
            yield _timed(lambda: pool.call(tasks.busy, RUN_SECONDS))

    return prepare


@contextlib.contextmanager
def _ppe(env: Env) -> Iterator[Timed]:
    submit = env.peer().submit
    yield _timed(lambda: submit(tasks.busy, RUN_SECONDS).result())


def paced_case() -> Case:
    """A 300 µs call after 600 µs of the caller's own work, 2 workers each."""
    name = "paced"
    label = f"{RUN_SECONDS * 1e6:g} us call, {PAUSE_SECONDS * 1e6:g} us apart"
    no_spin = None if pool_accepts("spin_seconds") else "snakepit.Pool has no spin_seconds"
    return Case(
        name,
        f"a call running {RUN_SECONDS * 1e6:g} us, the caller busy "
        f"{PAUSE_SECONDS * 1e6:g} us between calls",
        (
            Impl("snakepit", "snakepit.Pool, default spin_seconds", _own()),
            Impl("no-spin", "snakepit.Pool, spin_seconds=0", _own(spin_seconds=0.0), skip=no_spin),
            Impl("ppe", "ProcessPoolExecutor", _ppe),
        ),
        workers=WORKERS,
        interleave=20,
        targets=(
            vs(name, f"{label}: default spin / no spin", 1.0, "never worse", peer="no-spin"),
            vs(name, f"{label} / PPE", None, peer="ppe"),
        ),
    )
