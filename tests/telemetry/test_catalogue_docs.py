"""The event catalogue, the code and the generated docs table agree."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import snakepit
from snakepit.telemetry import ALL_EVENTS, CATALOGUE, EventSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = Path(snakepit.__file__).resolve().parent


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "snakepit_events", DOCS / "_ext" / "snakepit_events.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_literals(source: str) -> list[tuple[str, ...]]:
    """Tuples of string literals that start with "snakepit" in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Tuple)
            and node.elts
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
        ):
            values = tuple(e.value for e in node.elts)  # type: ignore[attr-defined]
            if values[0] == "snakepit":
                found.append(values)
    return found


def unknown_events(literals: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Literals that are neither a catalogued event nor a prefix of one (span, filter)."""
    known = set(ALL_EVENTS)
    prefixes = {event[:n] for event in ALL_EVENTS for n in range(1, len(event))}
    return [name for name in literals if name not in known and name not in prefixes]


def test_catalogue_names_are_unique_and_well_formed() -> None:
    assert len(set(ALL_EVENTS)) == len(ALL_EVENTS) == len(CATALOGUE)
    for spec in CATALOGUE:
        assert spec.name[0] == "snakepit"
        assert all(part and part == part.strip() for part in spec.name)
        assert spec.when
        assert spec.dotted == ".".join(spec.name)


def test_every_event_appears_in_the_generated_table() -> None:
    table = load_generator().render()
    for spec in CATALOGUE:
        name = "(" + ", ".join(f'"{part}"' for part in spec.name) + ")"
        assert f"* - `{name}`" in table, spec.dotted
        for key in (*spec.measurements, *spec.metadata):
            assert f"`{key}`" in table
    assert table.count("\n* - `(") == len(CATALOGUE)


def test_the_table_renders_what_it_is_given() -> None:
    extra = EventSpec(("snakepit", "made", "up"), {}, {"k": "a | b"}, "Never.")
    table = load_generator().render([*CATALOGUE, extra])
    assert '* - `("snakepit", "made", "up")`' in table
    assert "  - - `k`: a | b" in table
    assert "  - (none)" in table


def test_write_only_rewrites_a_changed_table(tmp_path: Path) -> None:
    generator = load_generator()
    path = tmp_path / "_generated" / "events.md"
    assert generator.write(path) is True
    assert generator.write(path) is False
    path.write_text("stale")
    assert generator.write(path) is True
    assert path.read_text() == generator.render()


def test_docs_build_includes_the_generated_table() -> None:
    conf = (DOCS / "conf.py").read_text()
    assert '"snakepit_events"' in conf
    assert "_generated" in conf  # excluded as a page of its own
    guide = (DOCS / "telemetry.md").read_text()
    assert "```{include} _generated/events.md" in guide
    assert "telemetry" in (DOCS / "index.md").read_text()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "docs/_generated/" in ignored  # never committed, so never stale


def test_the_scanner_finds_uncatalogued_names() -> None:
    source = (
        'execute(("snakepit", "call", "stop"), {})\n'
        'span(("snakepit", "call"))\n'
        'execute(("snakepit", "made", "up"), {})\n'
        'x = ("snakepit", "callz")\n'
        'y = ("other", "thing")\n'
    )
    assert sorted(unknown_events(event_literals(source))) == [
        ("snakepit", "callz"),
        ("snakepit", "made", "up"),
    ]


@pytest.mark.parametrize(
    "path",
    sorted(PACKAGE.rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_every_event_name_in_the_source_is_catalogued(path: Path) -> None:
    literals = event_literals(path.read_text(encoding="utf-8"))
    assert unknown_events(literals) == [], f"{path}: add these to CATALOGUE in _events.py"
