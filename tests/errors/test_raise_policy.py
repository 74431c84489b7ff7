"""Every error snakepit raises uses the snakepit hierarchy (see docs/errors.md).

The rule this test enforces, by walking the syntax tree of every module under
``snakepit/`` (and scanning the Cython sources as text):

* Failures of the library itself (pool, zero-copy, hardware, workers) raise a
  :class:`snakepit.SnakepitError` subclass. Raising a bare built-in that only
  says "something failed" is refused: ``Exception``, ``BaseException``,
  ``RuntimeError``, ``SystemError``, ``MemoryError`` and the generic
  ``OSError`` (with its aliases ``IOError``/``EnvironmentError``). Where
  compatibility needs a built-in (``concurrent.futures`` raises
  ``RuntimeError`` after shutdown), the snakepit class also derives from it,
  like :class:`~snakepit.errors.PoolClosedError`.
* Accepted as ordinary Python practice: ``ValueError`` and ``TypeError`` for a
  wrong argument at a public API boundary; ``KeyError``, ``IndexError``,
  ``AttributeError`` and ``LookupError`` where a mapping, sequence or
  ``__getattr__`` protocol demands them; ``NotImplementedError`` for abstract
  methods; ``AssertionError`` for unreachable code; ``StopIteration`` and
  ``SystemExit`` for their protocols; the specific ``OSError`` subclasses
  (``FileNotFoundError``, ``FileExistsError``, ``TimeoutError``...) when they
  report exactly that OS condition, as :mod:`os` or :mod:`subprocess` would.
  Re-raising (``raise`` / ``raise exc``) is always fine.
* An exception class defined in the package derives from ``SnakepitError``,
  unless it is an internal signal that never reaches a caller: then it is
  private (``_Name``) or listed in ``INTERNAL_EXCEPTIONS`` with the reason.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "snakepit"

FORBIDDEN: frozenset[str] = frozenset(
    {
        "Exception",
        "BaseException",
        "RuntimeError",
        "SystemError",
        "MemoryError",
        "OSError",
        "IOError",
        "EnvironmentError",
    }
)

# The root of the hierarchy necessarily derives from a built-in.
HIERARCHY_ROOT = "snakepit/errors/_base.py:SnakepitError"

# Exception classes that are not SnakepitErrors on purpose. Each never reaches
# user code: the layer that raises it catches it and translates or handles it.
INTERNAL_EXCEPTIONS: dict[str, str] = {
    "snakepit/_wire/_messages.py:ProtocolError": (
        "a malformed frame on the worker socket; the pool's reader and the worker "
        "loop catch it and treat the stream as broken (the worker is replaced)"
    ),
    "snakepit/_core/_core.pyx:CoreError": (
        "the C core's raw status code; zero_copy translates it into the snakepit hierarchy"
    ),
}

_PYX_RAISE = re.compile(r"^\s*raise\s+(\w+)\b", re.MULTILINE)
_PYX_CLASS = re.compile(r"^class\s+(\w+)\s*\(\s*(\w+)\s*\)", re.MULTILINE)


@dataclass(frozen=True)
class Offence:
    """One place that breaks the rule."""

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def _raised_name(node: ast.Raise) -> str | None:
    """The bare name raised by ``raise Name`` / ``raise Name(...)``, else ``None``."""
    target = node.exc
    if isinstance(target, ast.Call):
        target = target.func
    return target.id if isinstance(target, ast.Name) else None


def _shadowed_names(tree: ast.Module) -> set[str]:
    """Names the module binds itself (an import or class called RuntimeError is not the builtin)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def raise_offences(source: str, path: str) -> list[Offence]:
    """Forbidden bare built-in raises in one Python source."""
    tree = ast.parse(source, filename=path)
    shadowed = _shadowed_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            name = _raised_name(node)
            if name in FORBIDDEN and name not in shadowed:
                found.append(Offence(path, node.lineno, f"raise {name}"))
    return found


def _base_names(node: ast.ClassDef) -> list[str]:
    names = []
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def _is_builtin_exception(name: str) -> bool:
    obj = getattr(builtins, name, None)
    return isinstance(obj, type) and issubclass(obj, BaseException)


def class_offences(source: str, path: str) -> list[Offence]:
    """Public exception classes deriving from built-ins only (not from SnakepitError)."""
    tree = ast.parse(source, filename=path)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = _base_names(node)
        if not bases or not all(_is_builtin_exception(b) for b in bases):
            continue
        key = f"{path}:{node.name}"
        if node.name.startswith("_") or key in INTERNAL_EXCEPTIONS or key == HIERARCHY_ROOT:
            continue
        found.append(Offence(path, node.lineno, f"class {node.name}({', '.join(bases)})"))
    return found


def pyx_offences(source: str, path: str) -> list[Offence]:
    """The same two rules for Cython sources, which ``ast`` cannot parse."""
    found = []
    for m in _PYX_RAISE.finditer(source):
        if m.group(1) in FORBIDDEN:
            line = source.count("\n", 0, m.start()) + 1
            found.append(Offence(path, line, f"raise {m.group(1)}"))
    for m in _PYX_CLASS.finditer(source):
        key = f"{path}:{m.group(1)}"
        if _is_builtin_exception(m.group(2)) and key not in INTERNAL_EXCEPTIONS:
            line = source.count("\n", 0, m.start()) + 1
            found.append(Offence(path, line, f"class {m.group(1)}({m.group(2)})"))
    return found


# ------------------------------------------------------------------ the rule


def test_the_walk_sees_the_whole_package() -> None:
    paths = {_relative(p) for p in _modules()}
    assert "snakepit/pool/_pool.py" in paths
    assert "snakepit/zero_copy/__init__.py" in paths
    assert "snakepit/worker/_main.py" in paths
    assert "snakepit/cli.py" in paths
    assert len(paths) > 20


def test_no_bare_builtin_raises_in_the_package() -> None:
    offences = [o for p in _modules() for o in raise_offences(p.read_text(), _relative(p))]
    assert not offences, "raise a snakepit.errors class instead:\n" + "\n".join(map(str, offences))


def test_exception_classes_join_the_hierarchy() -> None:
    offences = [o for p in _modules() for o in class_offences(p.read_text(), _relative(p))]
    assert not offences, "derive from SnakepitError:\n" + "\n".join(map(str, offences))


def test_cython_sources_follow_the_rule() -> None:
    sources = sorted([*PACKAGE.rglob("*.pyx"), *PACKAGE.rglob("*.pxi")])
    assert sources, "no .pyx found: the scan would prove nothing"
    offences = [o for p in sources for o in pyx_offences(p.read_text(), _relative(p))]
    assert not offences, "\n".join(map(str, offences))


def test_internal_exceptions_still_exist() -> None:
    # A stale allow-list entry would silently allow a new class of that name.
    for key in INTERNAL_EXCEPTIONS:
        path, _, name = key.partition(":")
        assert re.search(rf"^class {name}\(", (PACKAGE.parent / path).read_text(), re.M), key


# --------------------------------------------------- the checker can fail


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('x')", ["raise RuntimeError"]),
        ("raise Exception", ["raise Exception"]),
        ("def f():\n    raise OSError(5, 'io')", ["raise OSError"]),
        ("raise IOError('x')", ["raise IOError"]),
        ("raise SystemError", ["raise SystemError"]),
        ("raise FileNotFoundError(path)", []),
        ("raise MemoryError", ["raise MemoryError"]),
        ("raise ValueError('bad argument')", []),
        ("raise TypeError('bad type')", []),
        ("raise KeyError(k)", []),
        ("raise NotImplementedError", []),
        ("raise AssertionError('unreachable')", []),
        ("try:\n    pass\nexcept Exception:\n    raise", []),
        ("try:\n    pass\nexcept Exception as e:\n    raise e", []),
        ("from snakepit.errors import WorkerError\nraise WorkerError()", []),
        ("import errors\nraise errors.RuntimeError('x')", []),
        ("class RuntimeError(Exception): ...\nraise RuntimeError()", []),
    ],
)
def test_raise_checker(source: str, expected: list[str]) -> None:
    assert [o.what for o in raise_offences(source, "x.py")] == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("class BadError(Exception): ...", ["class BadError(Exception)"]),
        ("class Bad(RuntimeError, ValueError): ...", ["class Bad(RuntimeError, ValueError)"]),
        ("class _Signal(Exception): ...", []),
        ("class Good(SnakepitError): ...", []),
        ("class Mixed(SnakepitError, KeyError): ...", []),
        ("class NotAnError: ...", []),
    ],
)
def test_class_checker(source: str, expected: list[str]) -> None:
    assert [o.what for o in class_offences(source, "x.py")] == expected


def test_pyx_checker() -> None:
    source = "class CoreError(Exception):\n    pass\n\ndef f():\n    raise RuntimeError('x')\n"
    found = pyx_offences(source, "m.pyx")
    assert [str(o) for o in found] == [
        "m.pyx:5: raise RuntimeError",
        "m.pyx:1: class CoreError(Exception)",
    ]
