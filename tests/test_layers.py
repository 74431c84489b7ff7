"""The package's import graph has no cycle, and no layer imports a higher one.

The graph is read from the source (``ast``): every ``import`` anywhere in a
module counts, at the top or inside a function, because an import hidden in
a function body is still a dependency (and the usual way to hide a cycle).
Only imports under ``if TYPE_CHECKING:`` are left out: they never run.
Importing ``a.b.c`` is an edge to ``a.b.c`` alone; the parent packages it
runs on the way are not counted, or every module would depend on
``snakepit/__init__.py``.

The layers, bottom to top (a module may import its own layer and lower ones;
the two capability packages on floor 3 may not import each other):

0. ``snakepit._core``, ``snakepit._util``: the C core's wrappers, helpers.
1. ``snakepit.errors``: the exception hierarchy.
2. ``snakepit.telemetry``: the event bus and its handlers.
3. ``snakepit.zero_copy`` and ``snakepit.hardware``: the capabilities.
4. ``snakepit._wire``: the frames and payloads both sides speak.
5. ``snakepit.worker``: the worker process.
6. ``snakepit.pool``: the supervisor.
7. the face and the tools: ``snakepit`` itself, ``cli``, ``__main__``,
   ``_bench*``, ``_demo``, ``testing``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "snakepit"

#: First two dotted parts of a module -> (floor, group).
LAYERS: dict[str, tuple[int, str]] = {
    "snakepit._core": (0, "_core"),
    "snakepit._util": (0, "_util"),
    "snakepit.errors": (1, "errors"),
    "snakepit.telemetry": (2, "telemetry"),
    "snakepit.zero_copy": (3, "zero_copy"),
    "snakepit.hardware": (3, "hardware"),
    "snakepit._wire": (4, "_wire"),
    "snakepit.worker": (5, "worker"),
    "snakepit.pool": (6, "pool"),
}
TOP = (7, "top")

#: Known upward imports, each with the reason it may stay for now.
EXEMPT: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    # Compiled modules are graph nodes too (they import nothing of ours).
    for p in PACKAGE.rglob("*.pyx"):
        found.setdefault(_module_name(p), p)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _targets(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The snakepit modules that module ``name`` (at ``path``) imports."""
    if path.suffix != ".py":
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            # `from package import submodule` imports the submodule.
            candidate = f"{base}.{alias.name}"
            targets.add(candidate if candidate in modules else base)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _targets(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> tuple[int, str]:
    return LAYERS.get(".".join(module.split(".")[:2]), TOP)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        floor, group = _layer(module)
        for target in sorted(targets):
            target_floor, target_group = _layer(target)
            upward = target_floor > floor
            sideways = target_floor == floor and target_group != group and floor != TOP[0]
            exempt = (module, ".".join(target.split(".")[:2])) in EXEMPT
            if (upward or sideways) and not exempt:
                found.append(f"{module} (floor {floor}) imports {target} (floor {target_floor})")
    return found


def test_the_walk_sees_the_whole_package() -> None:
    graph = _graph()
    assert "snakepit._core._core" in graph
    assert "snakepit.pool._pool" in graph
    assert "snakepit._wire.codec" in graph["snakepit.worker._main"]
    assert "snakepit.zero_copy._mapping" in graph["snakepit.zero_copy._ref"]
    assert len(graph) > 40


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_layer_imports_a_higher_one() -> None:
    violations = _violations(_graph())
    assert not violations, "\n".join(violations)


def test_every_exemption_is_still_needed() -> None:
    graph = _graph()
    for module, target in EXEMPT:
        assert any(t.startswith(target) for t in graph.get(module, ())), (module, target)


def test_the_checks_can_fail() -> None:
    graph = {"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}
    assert _cycles(graph) == [["a.x", "a.y"]]
    upward = {"snakepit.errors._x": {"snakepit.pool._pool"}, "snakepit.pool._pool": set()}
    assert _violations(upward) == [
        "snakepit.errors._x (floor 1) imports snakepit.pool._pool (floor 6)"
    ]
    sideways = {"snakepit.hardware._x": {"snakepit.zero_copy"}, "snakepit.zero_copy": set()}
    assert len(_violations(sideways)) == 1
    source = "import typing\nif typing.TYPE_CHECKING:\n    import a\ndef f():\n    import b\n"
    assert [n.names[0].name for n in _imports(ast.parse(source))] == ["typing", "b"]


@pytest.mark.parametrize("entry", ["import snakepit.worker._main", "import snakepit.worker"])
def test_a_worker_never_imports_the_supervisor(entry: str) -> None:
    script = (
        f"{entry}\n"
        "import sys\n"
        "loaded = sorted(m for m in sys.modules\n"
        "    if m.split('.')[:2] in (['snakepit', 'pool'], ['snakepit', 'hardware']))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_the_face_still_offers_every_name() -> None:
    script = (
        "import snakepit\n"
        "missing = [n for n in snakepit.__all__ if not hasattr(snakepit, n)]\n"
        "print(missing, 'snakepit.pool' in __import__('sys').modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[] True"
