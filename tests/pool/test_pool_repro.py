"""Pool(repro_dir=...): failed calls leave a script that reproduces them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import snakepit
from snakepit.errors import PythonError, WorkerCrashedError

from ..pool import _tasks

ROOT = Path(__file__).resolve().parents[2]


def _run_script(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _script_from_note(error: BaseException) -> Path:
    notes = [n for n in getattr(error, "__notes__", []) if "reproduce with" in n]
    assert len(notes) == 1, getattr(error, "__notes__", None)
    return Path(notes[0].rsplit(" ", 1)[1])


def test_a_failing_call_with_a_shared_array_is_reproduced(tmp_path: Path) -> None:
    array = snakepit.share(np.arange(6, dtype=np.float64))
    with snakepit.Pool(workers=1, repro_dir=tmp_path) as pool, pytest.raises(PythonError) as info:
        pool.call(_tasks.fill, array, "not a number")
    script = _script_from_note(info.value)
    assert script.parent.parent == tmp_path
    assert script.name == "repro.py"
    result = _run_script(script)
    assert result.returncode != 0
    assert info.value.python_type in result.stderr + result.stdout


def test_a_segfaulting_call_is_reproduced(tmp_path: Path) -> None:
    with snakepit.Pool(workers=1, repro_dir=tmp_path) as pool:
        with pytest.raises(WorkerCrashedError) as info:
            pool.call(_tasks.segfault)
        assert pool.call(_tasks.add, 1, 1) == 2
    result = _run_script(_script_from_note(info.value))
    assert result.returncode == -11


def test_calls_that_never_reached_a_worker_or_succeeded_leave_nothing(tmp_path: Path) -> None:
    with snakepit.Pool(workers=1, repro_dir=tmp_path) as pool:
        assert pool.call(_tasks.add, 1, 2) == 3
        with pytest.raises(snakepit.errors.DeviceNotAvailableError):
            pool.options(device="cuda:5").call(_tasks.add, 1, 2)
    assert list(tmp_path.iterdir()) == []


def test_without_repro_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with snakepit.Pool(workers=1) as pool, pytest.raises(PythonError) as info:
        pool.call(_tasks.fill, np.zeros(2), "x")
    assert not any("reproduce" in n for n in getattr(info.value, "__notes__", []))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ((_tasks.matmul_shapes, 3, 5), snakepit.errors.ShapeError),
        ((_tasks.exceed_memory_limit,), snakepit.errors.OutOfMemoryError),
        ((_tasks.unpicklable_result,), snakepit.errors.SerializationError),
        ((_tasks.exit_3,), WorkerCrashedError),
    ],
    ids=["shape", "oom", "unpicklable-result", "exit"],
)
def test_every_kind_of_failure_in_a_worker_is_reproduced(
    tmp_path: Path, call: tuple[object, ...], error: type[BaseException]
) -> None:
    with snakepit.Pool(workers=1, repro_dir=tmp_path) as pool, pytest.raises(error) as info:
        pool.call(*call)  # type: ignore[arg-type]
    script = _script_from_note(info.value)
    assert script.exists()
    result = _run_script(script)
    assert result.returncode != 0


def test_a_dtype_error_is_reproduced(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    with (
        snakepit.Pool(workers=1, repro_dir=tmp_path) as pool,
        pytest.raises(snakepit.errors.DtypeError) as info,
    ):
        pool.call(_tasks.mean_of_integers, 4)
    result = _run_script(_script_from_note(info.value))
    assert "dtype" in result.stderr


def test_calls_refused_before_a_worker_leave_nothing(tmp_path: Path) -> None:
    import threading

    breakers = snakepit.pool.CircuitBreakerRegistry(failure_threshold=1, open_duration=60)
    with snakepit.Pool(workers=1, repro_dir=tmp_path, circuit_breaker=breakers) as pool:
        with pytest.raises(snakepit.errors.SerializationError):
            pool.call(_tasks.identity, threading.Lock())  # cannot be sent at all
        with pytest.raises(WorkerCrashedError):
            pool.call(_tasks.segfault)
        before = sorted(tmp_path.iterdir())
        with pytest.raises(snakepit.errors.CircuitOpenError):
            pool.call(_tasks.add, 1, 2)
    assert len(before) == 1  # the segfault's, and nothing for the others
    assert sorted(tmp_path.iterdir()) == before
