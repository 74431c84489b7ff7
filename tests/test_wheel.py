"""The package as a user gets it: ``python -m build`` makes an sdist and a wheel
from it, and the wheel, installed into a fresh virtual environment (not
editable, away from this checkout), runs a pool call on a shared array and
``snakepit doctor``.

The build runs ``--no-isolation`` with this environment's setuptools, Cython
and numpy (requirements-dev.txt pins them), so it needs no registry. The fresh
environment gets no copy of the dependencies either: a ``.pth`` file points it
at a folder of links to this environment's installed packages, *without*
snakepit itself, and pip installs the wheel with ``--no-index``, so it checks
the wheel's ``Requires-Dist`` against those and fails if one is not met.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from snakepit._compiled import COMPILED_MODULES
from snakepit._version import __version__

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

#: What the sdist needs to build (setup.py reads csrc/ and flags.mk, cythonizes _core).
SDIST_MUST_HOLD = (
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "README.md",
    "csrc/flags.mk",
    "csrc/Makefile",
    "csrc/snakepit_core.h",
    "csrc/sp_internal.h",
    "snakepit/_core/_core.pyx",
    "snakepit/_core/includes/core.pxd",
    "snakepit/py.typed",
)
#: Left out of the source tree copy: build outputs and environments.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "_build", "*.egg-info", "*.so", "__pycache__",
    ".*_cache", ".hypothesis", ".benchmarks", "_core.c", "include", "lib",
)  # fmt: skip

SMOKE = """
import operator, sys
from pathlib import Path
import numpy as np
import snakepit
from snakepit import Pool

here = Path(sys.prefix).resolve()
for module in (snakepit, snakepit._core._core):
    assert here in Path(module.__file__).resolve().parents, module.__file__
assert Path(snakepit.get_library()).is_file()
from importlib import import_module
from snakepit._compiled import COMPILED_MODULES
for name in COMPILED_MODULES:  # compiled, and found before their source
    assert import_module(name).__file__.endswith(".so"), name
assert (Path(snakepit.get_include()) / "snakepit_core.h").is_file()
array = snakepit.zeros((1 << 16,), "float64")
array[:] = 1.5
with Pool(workers=1) as pool:
    total = pool.call(np.sum, array)
    pool.call(operator.imul, array, 2.0)  # in the worker, on the same pages
assert total == 1.5 * (1 << 16), total
assert float(array[0]) == 3.0 and float(array[-1]) == 3.0, array[:4]
print("smoke OK", snakepit.__version__, snakepit.__file__)
"""


@dataclass(frozen=True)
class Built:
    """The artefacts of one ``python -m build`` and the environment it went into."""

    sdist: Path
    wheel: Path
    venv: Path


def _build_unavailable() -> str | None:
    try:
        import build  # noqa: F401
    except ImportError:
        return "the 'build' package is not installed (requirements-dev.txt installs it)"
    return None


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def _link_dependencies(target: Path) -> Path:
    """A folder of links to this environment's packages, snakepit and .pth files left out."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("snakepit", "__editable__")) or name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    reason = _build_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the wheel test: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    # A copy, so that the build leaves no egg-info or build/ in the checkout.
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    dist = work / "dist"
    # Without --sdist/--wheel, build makes the sdist, then the wheel *from it*:
    # a file the sdist lacks breaks the wheel build.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), "."], source)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    venv = work / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    venv_site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
        ).strip()
    )
    deps = _link_dependencies(work / "deps")
    (venv_site / "_snakepit_test_deps.pth").write_text(f"{deps}\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--find-links", str(dist), "--only-binary", "snakepit-ml", f"snakepit-ml=={__version__}"],
        work,
    )  # fmt: skip
    return Built(sdist, wheel, venv)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return env


def test_sdist_holds_everything_the_build_needs(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        top = f"snakepit_ml-{__version__}/"
        names = {name.removeprefix(top) for name in archive.getnames()}
    missing = [path for path in SDIST_MUST_HOLD if path not in names]
    assert not missing, missing
    for source in [*(ROOT / "csrc").glob("sp_*.c"), *(ROOT / "snakepit/_core").glob("*.pxi")]:
        assert str(source.relative_to(ROOT)) in names, source
    assert not [n for n in names if n.endswith((".so", ".o")) or n == "snakepit/_core/_core.c"]


def test_wheel_holds_the_extension_the_library_and_the_header(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    assert any(n.startswith("snakepit/_core/_core.") and n.endswith(".so") for n in names)
    assert "snakepit/lib/libsnakepit_core.so" in names
    assert "snakepit/include/snakepit_core.h" in names
    assert "snakepit/py.typed" in names
    for module in COMPILED_MODULES:  # compiled, with their source beside them
        stem = module.replace(".", "/")
        assert any(n.startswith(f"{stem}.") and n.endswith(".so") for n in names), module
        assert f"{stem}.py" in names, module
    assert not [n for n in names if n.endswith((".pyx", ".pxi", ".c"))], "build inputs shipped"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "snakepit = snakepit.cli:main" in zipfile.ZipFile(built.wheel).read(entry_points).decode()
    )


def test_installed_wheel_runs_a_pool_call_on_a_shared_array(built: Built, tmp_path: Path) -> None:
    out = _run([str(built.venv / "bin" / "python"), "-I", "-c", SMOKE], tmp_path, _clean_env())
    assert out.startswith(f"smoke OK {__version__} {built.venv}"), out


def test_installed_console_command_runs_doctor(built: Built, tmp_path: Path) -> None:
    command = str(built.venv / "bin" / "snakepit")
    assert _run([command, "--version"], tmp_path, _clean_env()).strip() == f"snakepit {__version__}"
    out = _run([command, "doctor"], tmp_path, _clean_env())
    assert "native core: ok" in out, out
    assert "/dev/shm:" in out, out
