"""What workers print comes out labelled, whole lines at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from snakepit.worker._output import LabelledWriter

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    import snakepit
    from tests.pool import _output_tasks as tasks

    with snakepit.Pool(2, label_output={label}) as pool:
        pids = pool.worker_pids()
        assert list(pool.map(tasks.chatter, range(6))) == list(range(6))
    print("PIDS", *pids)
    """
)


def _run(label: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(label=label)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_printed_lines_are_labelled_with_their_worker_and_never_split() -> None:
    done = _run(True)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    pids = {int(pid) for pid in out[-1].split()[1:]}
    lines = out[:-1]
    assert len(lines) == 6 * 3
    for line in lines:
        assert line.startswith("(worker "), line
        label, _, text = line.partition(") ")
        worker_pid = int(label.rsplit(" ", 1)[1])
        assert worker_pid in pids
        assert text.startswith("item ")
        index = text.split()[1]
        assert text in {f"item {index} starts", f"item {index} half and half", f"item {index} ends"}
    errors = [line for line in done.stderr.splitlines() if "to stderr" in line]
    assert len(errors) == 6
    assert all(line.startswith("(worker ") for line in errors)


def test_label_output_false_leaves_output_as_printed() -> None:
    done = _run(False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()[:-1]
    assert lines
    assert not any(line.startswith("(worker ") for line in lines)


def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writer = LabelledWriter(fd, "(w) ", "utf-8")
        writer.write("a")
        writer.write("b")
        assert path.read_text() == ""
        writer.write("c\nd")
        assert path.read_text() == "(w) abc\n"
        writer.end_partial_line()
        assert path.read_text() == "(w) abc\n(w) d\n"
        writer.write("é\n")
        assert path.read_text(encoding="utf-8").endswith("(w) é\n")
    finally:
        os.close(fd)
