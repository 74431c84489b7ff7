"""Sphinx extension: the telemetry event reference table, generated from the code.

At ``builder-inited`` it renders :data:`snakepit.telemetry.CATALOGUE` into
``docs/_generated/events.md`` (git-ignored; rewritten only when it changes, so
incremental builds stay incremental), which ``telemetry.md`` includes. The
table therefore always matches the events the code documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Where the table goes, relative to the docs source directory.
OUTPUT = Path("_generated") / "events.md"


def _cell(text: str) -> str:
    # list-table cells are Markdown blocks; keep each entry on one line.
    return " ".join(text.split())


def _entries(values: Mapping[str, str], indent: str) -> list[str]:
    if not values:
        return [f"{indent}- (none)"]
    lines = [
        f"{indent}- - `{name}`: {_cell(doc)}" if i == 0 else f"{indent}  - `{name}`: {_cell(doc)}"
        for i, (name, doc) in enumerate(values.items())
    ]
    return lines


def render(catalogue: Iterable[Any] | None = None) -> str:
    """The event table as MyST Markdown (a ``list-table``), one row per event."""
    if catalogue is None:
        from snakepit.telemetry import CATALOGUE

        catalogue = CATALOGUE
    lines = [
        "<!-- Generated from snakepit.telemetry.CATALOGUE by docs/_ext/snakepit_events.py."
        " Do not edit. -->",
        "",
        "```{list-table}",
        ":header-rows: 1",
        ":widths: 22 30 30 18",
        "",
        "* - Event",
        "  - Measurements",
        "  - Metadata",
        "  - When",
    ]
    for spec in catalogue:
        name = "(" + ", ".join(f'"{part}"' for part in spec.name) + ")"
        lines.append(f"* - `{name}`")
        lines.extend(_entries(spec.measurements, "  "))
        lines.extend(_entries(spec.metadata, "  "))
        lines.append(f"  - {_cell(spec.when)}")
    lines.extend(["```", ""])
    return "\n".join(lines)


def write(path: Path, catalogue: Iterable[Any] | None = None) -> bool:
    """Write the table to ``path`` unless it is already there; returns whether it wrote."""
    text = render(catalogue)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _generate(app: Any) -> None:
    write(Path(app.srcdir) / OUTPUT)


def setup(app: Any) -> dict[str, Any]:
    """Register the generator with Sphinx."""
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
