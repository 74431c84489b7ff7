"""Every ```python example in docs/*.md and README.md runs.

The blocks of one page run in order in one fresh interpreter, sharing one
namespace (a later block may use what an earlier one made), in a scratch
folder. A block that cannot run here (a GPU, a server, a placeholder) carries
an opt-out on the line right before its fence, with the reason::

    <!-- not-run: needs a CUDA GPU -->

An HTML comment: Sphinx (MyST) and GitHub both leave it out of the page.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
OPT_OUT = re.compile(r"^<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")

RUNNER = """
import json, sys
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for path, line, source in blocks:
    # Padding puts each line at its line number in the page, for tracebacks.
    exec(compile("\\n" * line + source, path, "exec"), namespace)
print("ran", len(blocks), "blocks")
"""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # the first line of the code, 0-based
    lang: str
    source: str
    skip_reason: str | None


def blocks_of(page: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``page`` (or of ``text``, read as that page)."""
    lines = (page.read_text() if text is None else text).splitlines()
    found = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, lang = match.group("fence"), match.group("lang")
        before = lines[index - 1] if index > 0 else ""
        opt_out = OPT_OUT.match(before)
        end = index + 1
        while end < len(lines) and not lines[end].startswith(fence):
            end += 1
        source = "\n".join(lines[index + 1 : end]) + "\n"
        reason = opt_out.group("reason") if opt_out else None
        found.append(Block(page, index + 1, lang, source, reason))
        index = end + 1
    return found


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks_of(page) if b.lang == "python" and b.skip_reason is None]


def _python_pages() -> list[Path]:
    return [page for page in PAGES if _runnable(page)]


def test_the_extractor_finds_blocks_and_opt_outs() -> None:
    text = "\n".join(
        [
            "# Page",
            "```python",
            "x = 1",
            "```",
            "<!-- not-run: needs a CUDA GPU -->",
            "```python",
            "import cupy",
            "```",
            "````md",
            "```python",
            "inner = True",
            "```",
            "````",
            "```sh",
            "make test",
            "```",
        ]
    )
    blocks = blocks_of(Path("page.md"), text)
    assert [(b.lang, b.line, b.skip_reason) for b in blocks] == [
        ("python", 2, None),
        ("python", 6, "needs a CUDA GPU"),
        ("md", 9, None),
        ("sh", 14, None),
    ]
    assert blocks[0].source == "x = 1\n"


def test_every_opt_out_gives_a_reason() -> None:
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if "not-run" in line:
                assert OPT_OUT.match(line), f"{page.name}:{number}: {line!r}"


def test_most_examples_run() -> None:
    blocks = [b for page in PAGES for b in blocks_of(page) if b.lang == "python"]
    opted_out = [b for b in blocks if b.skip_reason is not None]
    assert len(blocks) >= 20
    assert len(opted_out) <= len(blocks) // 2, [(b.page.name, b.line) for b in opted_out]


@pytest.mark.slow
@pytest.mark.parametrize("page", _python_pages(), ids=lambda p: p.name)
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    runnable = _runnable(page)
    payload = json.dumps([[str(page.relative_to(ROOT)), b.line, b.source] for b in runnable])
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=payload,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert f"ran {len(runnable)} blocks" in result.stdout
