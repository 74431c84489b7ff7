"""The API reference (docs/api.md) documents every public name.

A name is public when it is in the ``__all__`` of one of ``MODULES``; it is
documented when a Sphinx object directive in docs/ (``autoclass``,
``autofunction``, ``py:data``, ...) names it or another path to the same
object (``snakepit.Pool`` documents ``snakepit.pool.Pool`` too).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MODULES = (
    "snakepit",
    "snakepit.pool",
    "snakepit.errors",
    "snakepit.telemetry",
    "snakepit.zero_copy",
    "snakepit.hardware",
    "snakepit.backends",
)
DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(?:py:)?(?:auto)?(?:function|class|exception|data|attribute|method)::\s+"
    r"(snakepit[\w.]*)",
    re.MULTILINE,
)


def _resolve(path: str) -> object:
    """The object at a dotted path such as ``snakepit.pool.Pool.call``."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute)
        return found
    raise LookupError(path)


def documented_paths(text: str) -> list[str]:
    """The dotted paths the object directives of ``text`` document."""
    return DIRECTIVE.findall(text)


def _documented() -> tuple[set[int], list[str]]:
    paths = [p for page in sorted(DOCS.glob("*.md")) for p in documented_paths(page.read_text())]
    unresolved = []
    ids = set()
    for path in paths:
        try:
            ids.add(id(_resolve(path)))
        except (LookupError, AttributeError):
            unresolved.append(path)
    return ids, unresolved


def _public() -> list[tuple[str, str]]:
    names = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if not inspect.ismodule(getattr(module, name)):
                names.append((module_name, name))
    return names


def test_every_directive_names_an_existing_object() -> None:
    _, unresolved = _documented()
    assert not unresolved, unresolved


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_is_in_the_api_reference(module_name: str) -> None:
    ids, _ = _documented()
    module = importlib.import_module(module_name)
    missing = [
        f"{module_name}.{name}"
        for mod, name in _public()
        if mod == module_name and id(getattr(module, name)) not in ids
    ]
    assert not missing, f"not in docs/api.md: {missing}"


def test_the_parser_sees_each_kind_of_directive() -> None:
    text = """
.. autoclass:: snakepit.pool.RetryPolicy
   :members:
.. autofunction:: snakepit.empty
.. py:data:: snakepit.telemetry.Event
  .. autoexception:: snakepit.errors.ShapeError
"""
    assert documented_paths(text) == [
        "snakepit.pool.RetryPolicy",
        "snakepit.empty",
        "snakepit.telemetry.Event",
        "snakepit.errors.ShapeError",
    ]
