"""Type-check the user scripts beside this file as a user's mypy would.

``user_ok.py`` must pass ``mypy --strict``; ``user_bad.py`` must fail on each
line marked ``# expect: <code>`` with that error code, and nowhere else. mypy
runs from a scratch directory, so it finds snakepit the way a user's project
does: through the installed (editable) package, not the current directory.

Run: ``python tests/typecheck/check_user_types.py`` (``make typecheck`` does).
Exit status 0 when both hold; the mismatches are printed otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_EXPECT = re.compile(r"#\s*expect:\s*([a-z-]+)")
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def expected_errors(path: Path) -> set[tuple[int, str]]:
    """The (line, code) pairs marked ``# expect:`` in ``path``."""
    found = set()
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(text)
        if match:
            found.add((number, match.group(1)))
    return found


def mypy_errors(path: Path) -> tuple[set[tuple[int, str]], str]:
    """The (line, code) errors strict mypy reports for ``path``, and its output."""
    with tempfile.TemporaryDirectory(prefix="snakepit-typecheck-") as scratch:
        target = Path(scratch) / path.name
        shutil.copy(path, target)
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", target.name],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
    errors = set()
    for line in result.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.add((int(match.group("line")), match.group("code")))
    return errors, result.stdout + result.stderr


def check() -> list[str]:
    """Mismatches between what mypy reports and what the scripts expect."""
    problems = []
    for name in ("user_ok.py", "user_bad.py"):
        path = HERE / name
        want = expected_errors(path)
        got, output = mypy_errors(path)
        if got != want:
            problems.append(
                f"{name}: expected {sorted(want)}, mypy reported {sorted(got)}\n{output}"
            )
    return problems


def main() -> int:
    """Print mismatches; 0 when there are none."""
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
