"""Run the source of the compiled modules (``snakepit/_compiled.py``) instead of
their compiled build, so the tests can check that the source still works.

Installed by the root ``conftest.py`` when ``SNAKEPIT_SOURCE_MODULES=1``,
before anything imports snakepit. It reads the list without importing the
package (whose ``__init__`` imports some of those modules).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ENV = "SNAKEPIT_SOURCE_MODULES"
_LIST = Path(__file__).resolve().parents[1] / "snakepit" / "_compiled.py"
COMPILED_MODULES: tuple[str, ...] = runpy.run_path(str(_LIST))["COMPILED_MODULES"]


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds each compiled module's ``.py`` before the import system's
    path finder finds the extension beside it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES or not path:
            return None
        source = os.path.join(path[0], fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_source() -> None:
    """Import the compiled modules from their source from now on."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
