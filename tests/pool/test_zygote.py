"""Workers forked from a template process keep every guarantee of fresh ones.

The template (``Pool(preload=...)``) is the workers' parent: it reaps them
and reports their wait statuses, dies with the supervisor, and never makes
the pool unusable when it dies or cannot start.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import snakepit
from snakepit.errors import ExitKind, WorkerCrashedError
from snakepit.pool._zygote import Zygote
from tests.pool import _tasks, _zygote_tasks


def _template_pid(pool: snakepit.Pool) -> int | None:
    zygote: Zygote | None = pool._supervisor._zygote
    return None if zygote is None else zygote.pid


def _parents(pool: snakepit.Pool) -> set[int]:
    return {psutil.Process(pid).ppid() for pid in pool.worker_pids()}


@pytest.fixture
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=2, device="cpu", env={**os.environ, "SNAKEPIT_TEST": "base"}) as p:
        yield p


def test_workers_are_forked_by_the_template(pool: snakepit.Pool) -> None:
    template = _template_pid(pool)
    assert template is not None
    assert _parents(pool) == {template}
    assert "zygote" in psutil.Process(template).cmdline()
    assert pool.call(_tasks.add, 1, 2) == 3
    # numpy was imported in the template, before any fork.
    assert psutil.Process(template).num_threads() == 1


def test_preload_none_starts_fresh_interpreters() -> None:
    with snakepit.Pool(workers=2, preload=None) as pool:
        assert _template_pid(pool) is None
        assert _parents(pool) == {os.getpid()}
        assert pool.call(_tasks.add, 1, 2) == 3


def test_preload_names_modules_imported_before_the_fork() -> None:
    with snakepit.Pool(workers=1, preload=["tests.pool._zygote_tasks"]) as pool:
        assert pool.call(_zygote_tasks.imported_in) == _template_pid(pool)
    with snakepit.Pool(workers=1, preload=[]) as pool:
        assert pool.call(_zygote_tasks.imported_in) == pool.worker_pids()[0]


def test_bad_preload_values_are_refused() -> None:
    with pytest.raises(ValueError, match="preload"):
        snakepit.Pool(workers=1, preload="numpy")
    with pytest.raises(ValueError, match="preload"):
        snakepit.Pool(workers=1, preload=[""])


@pytest.mark.parametrize(
    ("task", "kind", "signum", "code"),
    [
        (_tasks.segfault, ExitKind.segfault, signal.SIGSEGV, None),
        (_tasks.abort, ExitKind.abort, signal.SIGABRT, None),
        (_tasks.exit_3, ExitKind.exit, None, 3),
    ],
)
def test_exits_are_classified_from_the_real_wait_status(
    pool: snakepit.Pool, task: Any, kind: ExitKind, signum: int | None, code: int | None
) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        pool.call(task)
    handle = next(h for h in pool._supervisor.handles if h.last_exit is not None)
    assert handle.last_exit is not None
    assert (handle.last_exit.kind, handle.last_exit.signal) == (kind, signum)
    assert handle.last_exit.exit_code == code
    assert (info.value.exit_kind, info.value.signal, info.value.exit_code) == (
        kind.value,
        signum,
        code,
    )
    if signum is not None:
        # The fault log reached the forked worker: faulthandler's dump is here.
        assert f"in {task.__name__}" in (info.value.remote_traceback or "")
    assert pool.call(_tasks.add, 2, 2) == 4  # the replacement is forked too
    assert _parents(pool) == {_template_pid(pool)}


def test_environment_and_initializer_apply_per_worker_start(tmp_path: Any) -> None:
    marker = tmp_path / "starts"
    env = {**os.environ, "SNAKEPIT_TEST": "yes"}
    env.pop("SNAKEPIT_TEST_GONE", None)
    os.environ["SNAKEPIT_TEST_GONE"] = "supervisor only"
    try:
        with snakepit.Pool(
            workers=1,
            device="cpu",
            env=env,
            initializer=_zygote_tasks.count_start,
            initargs=(str(marker),),
        ) as pool:
            assert pool.call(_tasks.env, "SNAKEPIT_TEST") == "yes"
            assert pool.call(_tasks.env, "SNAKEPIT_TEST_GONE") is None
            assert pool.call(_tasks.env, "CUDA_VISIBLE_DEVICES") == ""
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
            assert pool.call(_tasks.env, "SNAKEPIT_TEST") == "yes"
            assert _parents(pool) == {_template_pid(pool)}
        assert marker.read_text() == "xx"
    finally:
        del os.environ["SNAKEPIT_TEST_GONE"]


def test_a_worker_starts_in_the_directory_of_its_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with snakepit.Pool(workers=1) as pool:
        assert pool.call(os.getcwd) == os.getcwd()
        monkeypatch.chdir(tmp_path)
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        assert pool.call(os.getcwd) == str(tmp_path)


def test_forked_workers_do_not_share_random_streams() -> None:
    # numpy.random seeds its global state when imported: here, in the template.
    with snakepit.Pool(workers=2, preload=["numpy", "numpy.random"]) as pool:
        # Both at once: one runs on each worker.
        futures = [pool.submit(_zygote_tasks.draws_after, 0.5) for _ in range(2)]
        draws = [future.result(timeout=30) for future in futures]
    assert len({pid for pid, _, _ in draws}) == 2
    assert draws[0][1] != draws[1][1]  # random
    assert draws[0][2] != draws[1][2]  # numpy.random


def test_a_killed_template_is_replaced(pool: snakepit.Pool) -> None:
    first = _template_pid(pool)
    assert first is not None
    old = set(pool.worker_pids())
    os.kill(first, signal.SIGKILL)
    # Its workers die with it and are replaced, by a new template.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len(pool.worker_pids()) == 2 and not old & set(pool.worker_pids()):
            break
        time.sleep(0.05)
    assert pool.call(_tasks.add, 1, 1) == 2
    second = _template_pid(pool)
    assert second not in (None, first)
    assert _parents(pool) == {second}
    assert pool.stats()["crashes"] == 2
    kinds = {h.last_exit.kind for h in pool._supervisor.handles if h.last_exit is not None}
    assert kinds == {ExitKind.killed}


def test_a_template_that_cannot_start_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="snakepit.pool._zygote"),
        snakepit.Pool(workers=2, preload=["tests.pool._zygote_exits"]) as pool,
    ):
        assert pool.call(_tasks.add, 1, 2) == 3
        assert _parents(pool) == {os.getpid()}
        assert _template_pid(pool) is None
    assert "fresh interpreters" in caplog.text


def test_a_template_with_threads_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="snakepit.pool._zygote"),
        snakepit.Pool(workers=1, preload=["tests.pool._zygote_thread"]) as pool,
    ):
        assert pool.call(_tasks.add, 1, 2) == 3
        assert _parents(pool) == {os.getpid()}
    assert "runs 2 threads" in caplog.text


def test_shutdown_leaves_no_template() -> None:
    pool = snakepit.Pool(workers=2)
    template = _template_pid(pool)
    workers = pool.worker_pids()
    assert template is not None
    pool.shutdown()
    for pid in [template, *workers]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("template", ["fresh", "supervisor"])
def test_a_killed_supervisor_takes_the_template_and_workers_along(template: str) -> None:
    # "supervisor": the template is a fork of the supervisor, which watches
    # it through a pidfd (not PR_SET_PDEATHSIG).
    script = textwrap.dedent(
        f"""
        import time
        import snakepit
        pool = snakepit.Pool(workers=2, template={template!r})
        # Busy workers do not notice their socket closing: only the
        # template's death can end them.
        busy = [pool.submit(time.sleep, 600) for _ in range(2)]
        deadline = time.monotonic() + 60
        while pool.stats()["busy"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        zygote = pool._supervisor._zygote
        print(int(zygote.forked_from_supervisor), zygote.pid, *pool.worker_pids(), flush=True)
        time.sleep(600)
        """
    )
    pids: list[int] = []
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            forked, *pids = (int(p) for p in proc.stdout.readline().split())
            assert forked == (template == "supervisor")
            assert len(pids) == 3
            assert psutil.Process(pids[0]).ppid() == proc.pid
            assert {psutil.Process(pid).ppid() for pid in pids[1:]} == {pids[0]}
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            alive = [p for p in map(_maybe, pids) if p is not None]
            _, alive = psutil.wait_procs(alive, timeout=10)
            assert not alive
        finally:
            proc.kill()
            for leftover in filter(None, map(_maybe, pids)):
                leftover.kill()
    snakepit.zero_copy.collect_garbage()


def test_respawn_is_faster_than_a_fresh_interpreter() -> None:
    """Crash-to-next-success with the template against ``preload=None``, same run."""
    ratios = []
    for _ in range(3):
        forked = _respawn_seconds("auto")
        fresh = _respawn_seconds(None)
        ratios.append(forked / fresh)
        if ratios[-1] < 0.5:
            break
    assert min(ratios) < 0.5, ratios


def _respawn_seconds(preload: Any) -> float:
    best = float("inf")
    for _ in range(3):
        # A position's first crash: later ones wait for the restart backoff.
        with snakepit.Pool(workers=1, preload=preload) as pool:
            pool.call(_tasks.add, 1, 1)
            started = time.perf_counter()
            with pytest.raises(WorkerCrashedError):
                pool.call(_tasks.segfault)
            pool.call(_tasks.add, 1, 1)
            best = min(best, time.perf_counter() - started)
    return best


def _maybe(pid: int) -> Any:
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.NoSuchProcess:
        return None


def test_modules_needed_late_are_imported_by_the_template_once_idle() -> None:
    # Error parsing is not imported at start-up (a fresh worker would pay for
    # it before its first call); the template imports it once idle, so that
    # workers forked later (restarts) have it ready.
    from snakepit.worker._zygote import DEFERRED_IMPORTS

    names = list(DEFERRED_IMPORTS)
    with snakepit.Pool(workers=1, preload=None) as fresh:
        assert fresh.call(_zygote_tasks.loaded, names) == [False] * len(names)
    with snakepit.Pool(workers=1) as pool:
        time.sleep(0.5)  # the template is idle after the first fork
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        assert pool.call(_zygote_tasks.loaded, names) == [True] * len(names)
