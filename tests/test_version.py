"""One version: ``snakepit/_version.py``; everything else reads it or agrees with it."""

from __future__ import annotations

import importlib.metadata
import re
import runpy
from pathlib import Path

import snakepit
from snakepit._version import __version__

ROOT = Path(__file__).resolve().parents[1]


def _numbers(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    assert match, f"not MAJOR.MINOR.PATCH: {version!r}"
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def test_c_header_macros_agree_with_the_version() -> None:
    header = (ROOT / "csrc" / "snakepit_core.h").read_text()
    macros = {
        part: int(value)
        for part, value in re.findall(
            r"#define SP_CORE_VERSION_(MAJOR|MINOR|PATCH)\s+(\d+)", header
        )
    }
    assert set(macros) == {"MAJOR", "MINOR", "PATCH"}, macros
    assert (macros["MAJOR"], macros["MINOR"], macros["PATCH"]) == _numbers(__version__)


def test_the_package_the_metadata_and_the_docs_read_it() -> None:
    assert snakepit.__version__ == __version__
    # Stale after a version change until the package is installed again (make build).
    assert importlib.metadata.version("snakepit-ml") == __version__
    assert runpy.run_path(str(ROOT / "docs" / "conf.py"))["release"] == __version__


def test_pyproject_writes_no_version_of_its_own() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"(?m)^version\s*=", project)
    assert 'dynamic = ["version"]' in project
    assert 'version = { attr = "snakepit._version.__version__" }' in pyproject
