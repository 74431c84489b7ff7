"""Reproduction scripts: they re-raise the original error and stay inside their directory."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import snakepit
from snakepit import telemetry
from snakepit.errors import PythonError
from snakepit.errors._base import remote_class
from snakepit.pool import _repro, write_repro

# Runs the script as `python repro.py` would, then reports whether snakepit was imported.
RUNNER = textwrap.dedent(
    """
    import runpy, sys
    sys.argv = [sys.argv[1]]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        print("SNAKEPIT-IMPORTED" if "snakepit" in sys.modules else "NO-SNAKEPIT")
    """
)

MODULE_SOURCE = textwrap.dedent(
    """
    import numpy as np

    class Scaler:
        def apply(self, x, *, scale):
            raise ValueError(f"bad input {x} (scale={scale})")

    def fail(x, *, scale=1):
        raise ValueError(f"bad input {x} (scale={scale})")

    def total(array):
        raise RuntimeError(f"total was {float(np.asarray(array).sum())}")
    """
)


@pytest.fixture(autouse=True)
def _no_handler_left_attached() -> Iterator[None]:
    """The bus is global: every test detaches what it attached."""
    before = {info.handler_id for info in telemetry.list_handlers()}
    yield
    assert {info.handler_id for info in telemetry.list_handlers()} == before


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A user module importable here and (through the recorded path) in the repro."""
    source = tmp_path / "src"
    source.mkdir()
    name = f"repro_user_{os.getpid()}_{threading.get_ident()}"
    (source / f"{name}.py").write_text(MODULE_SOURCE)
    monkeypatch.syspath_prepend(str(source))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


def run(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def failure(function: object, *args: object, **kwargs: object) -> BaseException:
    try:
        function(*args, **kwargs)  # type: ignore[operator]
    except BaseException as exc:
        return exc
    raise AssertionError("the function did not fail")


def test_repro_script_raises_the_same_exception_without_snakepit(
    tmp_path: Path, user_module: ModuleType
) -> None:
    error = failure(user_module.fail, 42, scale=2)
    target = write_repro(
        tmp_path / "repros",
        function=user_module.fail,
        args=(42,),
        kwargs={"scale": 2},
        error=error,
        call_id=17,
    )
    assert target.parent == (tmp_path / "repros").resolve()
    assert target.name.startswith("snakepit-repro-")
    assert target.name.endswith("-17")
    assert sorted(p.name for p in target.iterdir()) == ["call.pkl", "repro.py"]
    script = (target / "repro.py").read_text()
    assert "# Error:\n#   ValueError: bad input 42 (scale=2)\n" in script
    assert f"# Function: {user_module.__name__}:fail" in script
    result = run(target / "repro.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "ValueError: bad input 42 (scale=2)"
    assert result.stdout.strip() == "NO-SNAKEPIT"


def test_function_given_as_module_colon_qualname(tmp_path: Path, user_module: ModuleType) -> None:
    target = write_repro(
        tmp_path,
        function=f"{user_module.__name__}:Scaler.apply",
        args=(user_module.Scaler(), "x"),
        kwargs={"scale": 3},
        error="ValueError: bad input x (scale=3)",
    )
    result = run(target / "repro.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "ValueError: bad input x (scale=3)"


def test_unimportable_functions_and_arguments_travel_by_value(tmp_path: Path) -> None:
    class Local:
        def __init__(self, n: int) -> None:
            self.n = n

    def divide(item: Local) -> float:
        return 1 / (item.n - 5)

    error = failure(divide, Local(5))
    target = write_repro(tmp_path, function=divide, args=(Local(5),), error=error)
    script = (target / "repro.py").read_text()
    assert "# Function: <pickled by value with cloudpickle>" in script
    result = run(target / "repro.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "ZeroDivisionError: division by zero"


def test_shared_arrays_and_references_are_copied(tmp_path: Path, user_module: ModuleType) -> None:
    shared = snakepit.zeros((4,), "float64")
    shared[:] = 2.5
    ref = snakepit.ref_of(shared)
    target = write_repro(
        tmp_path,
        function=user_module.total,
        args=(shared,),
        error=failure(user_module.total, shared),
    )
    ref_target = write_repro(
        tmp_path, function=user_module.total, args=(ref,), error="RuntimeError"
    )
    del shared, ref  # the blocks may go: the repro holds copies
    for directory in (target, ref_target):
        with (directory / "call.pkl").open("rb") as f:
            pickle.load(f)  # the search path
            call = pickle.load(f)
        (array,) = call["args"]
        assert type(array) is np.ndarray
        assert array.tolist() == [2.5] * 4
        result = run(directory / "repro.py", cwd=tmp_path)
        assert result.stderr.rstrip().splitlines()[-1] == "RuntimeError: total was 10.0"


def test_a_remote_error_is_recorded_as_its_original_type(
    tmp_path: Path, user_module: ModuleType
) -> None:
    error = remote_class(PythonError, ValueError)(
        "bad input 1 (scale=1)", python_type="ValueError", remote_traceback="Traceback ...\n"
    )
    target = write_repro(tmp_path, function=user_module.fail, args=(1,), error=error)
    with (target / "call.pkl").open("rb") as f:
        pickle.load(f)
        call = pickle.load(f)
    assert call["error"]["type"] == "builtins.ValueError"
    assert call["error"]["text"] == "ValueError: bad input 1 (scale=1)"
    result = run(target / "repro.py", cwd=tmp_path)
    assert "note: the original call raised" not in result.stderr  # same type
    assert result.stderr.rstrip().splitlines()[-1] == "ValueError: bad input 1 (scale=1)"


def test_files_are_private(tmp_path: Path, user_module: ModuleType) -> None:
    target = write_repro(tmp_path / "new" / "dir", function=user_module.fail, error="x")
    assert stat.S_IMODE(target.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(target.parent.stat().st_mode) & 0o077 == 0
    for name in ("repro.py", "call.pkl"):
        assert stat.S_IMODE((target / name).stat().st_mode) & 0o177 == 0


@pytest.mark.parametrize("call_id", ["../../escape", "a/b", "/abs", "..", ".hidden", "x" * 65])
def test_path_escapes_through_the_call_id_are_refused(tmp_path: Path, call_id: str) -> None:
    base = tmp_path / "repros"
    with pytest.raises(ValueError, match="call_id"):
        write_repro(base, function="m:f", error="e", call_id=call_id)
    assert sorted(tmp_path.iterdir()) == []  # nothing was written, not even the base


def test_a_symlinked_target_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "repros"
    base.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (base / "snakepit-repro-fixed-1").symlink_to(elsewhere)
    monkeypatch.setattr(_repro, "_subdir_name", lambda now, tag: "snakepit-repro-fixed-1")
    with pytest.raises(FileExistsError, match="symbolic link"):
        write_repro(base, function="m:f", error="e", call_id=1)
    assert list(elsewhere.iterdir()) == []


def test_a_name_that_would_leave_the_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_repro, "_subdir_name", lambda now, tag: "../snakepit-repro-out")
    with pytest.raises(ValueError, match="outside"):
        write_repro(tmp_path / "repros", function="m:f", error="e")
    assert not (tmp_path / "snakepit-repro-out").exists()


def test_error_text_cannot_inject_code_into_the_script(
    tmp_path: Path, user_module: ModuleType
) -> None:
    evil = 'boom\nimport os; os.system("touch pwned")\r"""\x1b[31m\u2028raise SystemExit(0)'
    target = write_repro(tmp_path, function=user_module.fail, args=(1,), error=ValueError(evil))
    script = (target / "repro.py").read_text()
    header = script.split('"""')[0]
    assert all(line.startswith("#") for line in header.splitlines() if line)
    compile(script, "repro.py", "exec")
    result = run(target / "repro.py", cwd=tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "pwned").exists()


def test_bad_functions_and_unpicklable_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="module:qualname"):
        write_repro(tmp_path, function="not a ref", error="e")
    with pytest.raises(TypeError, match="callable"):
        write_repro(tmp_path, function=42, error="e")  # type: ignore[arg-type]
    with pytest.raises(pickle.PicklingError, match="cannot be pickled"):
        write_repro(tmp_path, function="m:f", args=(threading.Lock(),), error="e")
    assert list(tmp_path.iterdir()) == []
