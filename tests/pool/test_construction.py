"""Validation at construction: Pool(...) fails itself, not its first call, and leaves nothing.

Real workers (docs/crash-recovery.md, "Validation at construction").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import DeviceNotAvailableError, PythonError, WorkerStartError
from snakepit.hardware import _detect as detect_module
from snakepit.hardware import detect
from snakepit.telemetry._events import WORKER_CRASH, WORKER_START
from snakepit.testing import reap_leaked_workers
from snakepit.zero_copy import _gc

from . import _session_tasks, _tasks


def _absent_gpu() -> str:
    """A CUDA device this machine does not have (cuda:1 on a machine without GPUs)."""
    return f"cuda:{max(1, len(detect().cuda.devices))}"


@contextmanager
def worker_pids() -> Iterator[set[int]]:
    """The pids of every worker that started or died during the block."""
    pids: set[int] = set()
    lock = threading.Lock()
    threads_before = set(threading.enumerate())

    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        if metadata.get("pid") is not None:
            with lock:
                pids.add(int(metadata["pid"]))

    handler_id = f"tests-construction-{id(pids)}"
    telemetry.attach_many(handler_id, [WORKER_START, WORKER_CRASH], handler)
    try:
        yield pids
    finally:
        telemetry.detach(handler_id)
    # A failed pool's threads (monitor, pid watcher, readers) are gone too.
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not [name for name in left if name.startswith("snakepit-")], left


def _assert_nothing_left(pids: set[int]) -> None:
    assert reap_leaked_workers() == []
    owners = {int(name.split("-")[1]) for name in _gc.list_regions()}
    assert not owners & pids, "a worker's shared memory outlived the pool"


@pytest.mark.parametrize("device", ["absent", ["cpu", "absent"], "cuda"])
def test_an_absent_device_fails_at_construction(device: str | list[str]) -> None:
    if detect().cuda.devices and device == "cuda":
        pytest.skip("this machine has a CUDA device")  # the others still run here
    absent = _absent_gpu()
    spec = [absent if d == "absent" else d for d in device] if isinstance(device, list) else device
    spec = absent if spec == "absent" else spec
    with worker_pids() as pids, pytest.raises(DeviceNotAvailableError) as info:
        snakepit.Pool(workers=2, device=spec)
    assert info.value.device == (absent if device != "cuda" else "cuda")
    assert "available here" in str(info.value)
    assert pids == set()  # refused before any worker started
    _assert_nothing_left(pids)


def test_cpu_and_auto_still_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with snakepit.Pool(workers=1, device="auto") as pool:
        assert pool.call(_tasks.add, 1, 2) == 3

    def no_detection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("device='cpu' must not run hardware detection")

    monkeypatch.setattr(detect_module, "detect", no_detection)
    monkeypatch.setattr("snakepit.hardware._select.detect", no_detection)
    with snakepit.Pool(workers=1, device="cpu") as pool:
        assert pool.call(_tasks.add, 1, 2) == 3


def test_a_present_gpu_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.hardware._doubles import NvmlDouble, h100, machine

    gpu = h100("GPU-0d1e2f30-0000-4000-8000-000000000000")
    monkeypatch.setattr(
        detect_module, "_cache", detect(machine(load_nvml=lambda: NvmlDouble(gpus=[gpu])))
    )
    with snakepit.Pool(workers=1, device="cuda:0") as pool:
        assert pool.call(_tasks.env, "CUDA_VISIBLE_DEVICES") == "0"
    with pytest.raises(DeviceNotAvailableError, match="only cuda:0 exists"):
        snakepit.Pool(workers=1, device="cuda:1")


@pytest.mark.parametrize("preload", ["auto", None], ids=["forked", "fresh-interpreter"])
def test_a_raising_initializer_fails_construction(preload: str | None) -> None:
    with worker_pids() as pids, pytest.raises(WorkerStartError) as info:
        snakepit.Pool(workers=2, initializer=_tasks.always_raise, preload=preload)
    error = info.value
    assert error.exit_kind == "python_error"
    assert error.worker_id in (0, 1)
    assert "initializer refuses" in str(error)
    # The worker's own error, catchable by its type, with the worker's traceback.
    assert isinstance(error.__cause__, PythonError)
    assert isinstance(error.__cause__, ValueError)
    assert "always_raise" in (error.remote_traceback or "")
    assert "always_raise" in (error.__cause__.remote_traceback or "")
    assert pids  # workers did start, and died...
    _assert_nothing_left(pids)  # ...with nothing of theirs left


def test_a_failure_does_not_wait_for_the_other_workers(tmp_path: Path) -> None:
    grace = 30.0
    started = time.monotonic()
    with worker_pids() as pids, pytest.raises(WorkerStartError, match="first worker refuses"):
        snakepit.Pool(
            workers=2,
            initializer=_session_tasks.first_raises_others_hang,
            initargs=(str(tmp_path),),
            terminate_grace=grace,
        )
    # The hanging worker is killed, not given its grace period to stop.
    assert time.monotonic() - started < grace / 2
    _assert_nothing_left(pids)


def test_workers_that_never_become_ready_fail_construction() -> None:
    with worker_pids() as pids, pytest.raises(WorkerStartError) as info:
        snakepit.Pool(
            workers=1,
            initializer=_session_tasks.always_segfault,
            worker_max_crashes=1,
            restart_backoff=(0.0, 0.01),
        )
    assert info.value.exit_kind == "segfault"
    assert "given up" in str(info.value)
    _assert_nothing_left(pids)


def test_session_initializer_does_not_run_at_construction() -> None:
    # It runs per session, at the session's first call, never at start-up.
    with snakepit.Pool(workers=1, session_initializer=_session_tasks.refuse_session) as pool:
        assert pool.call(_tasks.add, 2, 2) == 4


@pytest.mark.parametrize(("workers", "start_timeout"), [(1, 0.3), (2, 0.5)])
def test_no_worker_ready_within_start_timeout_fails_construction(
    workers: int, start_timeout: float
) -> None:
    started = time.monotonic()
    with worker_pids() as pids, pytest.raises(WorkerStartError, match="start_timeout") as info:
        snakepit.Pool(
            workers=workers,
            initializer=_session_tasks.sleep,
            initargs=(60.0,),
            start_timeout=start_timeout,
        )
    assert f"{start_timeout:g} s" in str(info.value.reason)
    # Killed, not waited for: the initializer had a minute to go.
    assert time.monotonic() - started < 30
    _assert_nothing_left(pids)


def test_some_workers_ready_within_start_timeout_start_the_pool_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level("WARNING", logger="snakepit"),
        snakepit.Pool(
            workers=2,
            initializer=_session_tasks.first_fast_others_slow,
            initargs=(str(tmp_path), 6.0),
            start_timeout=1.5,
            preload=[],
        ) as pool,
    ):
        assert pool.call(_tasks.add, 1, 2) == 3
        warnings = [r.getMessage() for r in caplog.records if "start_timeout" in r.getMessage()]
        assert len(warnings) == 1
        assert "1 of 2 workers ready" in warnings[0]
