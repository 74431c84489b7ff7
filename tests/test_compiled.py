"""The modules that the build compiles (``snakepit/_compiled.py``): they run
compiled, and their source passes the same unit tests."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._source_modules import COMPILED_MODULES, ENV

ROOT = Path(__file__).resolve().parents[1]
#: The unit tests of the compiled modules, run again on their source.
_THEIR_TESTS = (
    "tests/test_compiled.py",
    "tests/wire/test_compact_flat.py",
    "tests/wire/test_compact_result.py",
    "tests/wire/test_protocol.py",
    "tests/worker/test_codec_flat.py",
    "tests/worker/test_codec_flat_large.py",
    "tests/worker/test_codec_flat_inline.py",
    "tests/worker/test_codec_lean.py",
    "tests/zero_copy/test_packed.py",
)


def test_the_list_is_the_package_s() -> None:
    from snakepit import _compiled

    assert COMPILED_MODULES == _compiled.COMPILED_MODULES
    for name in COMPILED_MODULES:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_each_module_runs_as_this_run_asked(name: str) -> None:
    path = importlib.import_module(name).__file__
    assert path is not None
    if os.environ.get(ENV) == "1":
        assert path.endswith(".py"), path
    elif os.environ.get("SNAKEPIT_PURE_PYTHON") == "1":
        pytest.skip("built with SNAKEPIT_PURE_PYTHON=1: nothing compiled")
    else:
        # A build that stopped compiling them would only be slower: caught here.
        assert path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), path
        source = ROOT / (name.replace(".", "/") + ".py")
        # Else the tests ran older code than the source says.
        assert os.path.getmtime(path) >= source.stat().st_mtime, f"{path} is stale: make build"


def test_their_source_passes_their_unit_tests() -> None:
    env = {**os.environ, ENV: "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-W", "error", "-p", "no:cacheprovider",
         "-k", "not their_source", *_THEIR_TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1], result.stdout[-500:]
