"""``bench/report.py``'s arithmetic: targets on medians and metrics, skipped peers and why."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snakepit._bench import cases
from snakepit._bench._model import Case, Impl, Target, Timed, timed_only, vs
from snakepit._bench.report import (
    BenchFile,
    Skip,
    evaluate,
    load_results,
    render,
    skipped_impls,
)

REPORT = Path(__file__).resolve().parents[1] / "bench" / "report.py"


def _targets() -> list[Target]:
    return [
        vs("a", "a vs peer", 1.0, "no slower"),
        vs("b", "b vs peer", 1.0, "no slower"),
        vs("c", "c info", None),
        Target("d p99", ("d", "snakepit"), ("d", "peer"), 1.0, "p99 no worse", metric="p99"),
        Target("e absolute", ("e", "snakepit"), None, 0.05, "< 50 ms"),
        vs("f vs ray", "f vs ray", 1.0, peer="ray"),
        vs("g", "g vs peer", 1.0),
    ]


def _figures() -> dict[tuple[str, str, str], float]:
    return {
        ("a", "snakepit", "median"): 1.0,
        ("a", "peer", "median"): 4.0,  # PASS at 0.25
        ("a", "snakepit", "q1"): 0.9,
        ("a", "snakepit", "q3"): 1.1,
        ("a", "peer", "q1"): 3.5,
        ("a", "peer", "q3"): 4.5,  # the spread: 0.9 / 4.5 to 1.1 / 3.5
        ("b", "snakepit", "median"): 3.0,
        ("b", "peer", "median"): 2.0,  # FAIL at 1.5
        ("c", "snakepit", "median"): 1.0,
        ("c", "peer", "median"): 2.0,  # INFO
        ("d", "snakepit", "median"): 1.0,  # the medians would fail; the p99s pass
        ("d", "peer", "median"): 0.5,
        ("d", "snakepit", "p99"): 0.002,
        ("d", "peer", "p99"): 0.004,
        ("e", "snakepit", "median"): 0.08,  # FAIL: an absolute above its limit
        ("f vs ray", "snakepit", "median"): 1.0,  # Ray skipped (see the skips)
    }


def test_every_verdict_from_synthetic_figures() -> None:
    skips = [Skip("f vs ray", "ray", "ray is not installed")]
    rows = evaluate(_targets(), _figures(), skips)
    verdicts = {row.target.label: (row.verdict, row.value) for row in rows}
    assert verdicts["a vs peer"] == ("PASS", pytest.approx(0.25))
    spread = next(row.spread for row in rows if row.target.label == "a vs peer")
    assert spread == (pytest.approx(0.2), pytest.approx(1.1 / 3.5))
    assert next(row.spread for row in rows if row.target.label == "b vs peer") is None
    assert verdicts["b vs peer"] == ("FAIL", pytest.approx(1.5))
    assert verdicts["c info"] == ("INFO", pytest.approx(0.5))
    assert verdicts["d p99"] == ("PASS", pytest.approx(0.5))
    assert verdicts["e absolute"] == ("FAIL", pytest.approx(0.08))
    assert verdicts["f vs ray"] == ("SKIPPED", None)
    assert verdicts["g vs peer"] == ("MISSING", None)
    assert next(row for row in rows if row.verdict == "SKIPPED").why == "ray is not installed"


def test_a_whole_case_skip_explains_its_targets() -> None:
    rows = evaluate([vs("h", "h", 1.0)], {}, [Skip("h", "all", "/dev/shm has 64 MiB free")])
    assert (rows[0].verdict, rows[0].why) == ("SKIPPED", "/dev/shm has 64 MiB free")


def test_render_shows_ratio_target_result_and_the_skips() -> None:
    skips = [Skip("f vs ray", "ray", "ray is not installed")]
    rows = evaluate(_targets(), _figures(), skips)
    text = render(rows, skips, [("g", "snakepit"), ("g", "peer")])
    lines = text.splitlines()
    header = ["check", "snakepit", "baseline", "ratio", "IQR", "range", "target", "result"]
    assert lines[0].split() == header
    line = next(line for line in lines if line.startswith("a vs peer"))
    assert "0.25 (4x faster)" in line
    assert "0.2-0.314" in line
    assert "<= 1 (no slower)" in line
    assert line.split()[-1] == "PASS"
    line = next(line for line in lines if line.startswith("d p99 [p99]"))
    assert "2 ms" in line
    assert "4 ms" in line
    assert line.split()[-1] == "PASS"
    line = next(line for line in lines if line.startswith("e absolute"))
    assert "80 ms" in line
    assert "<= 50 ms" in line
    assert line.split()[-1] == "FAIL"
    assert "2 passed, 2 failed, 1 for information, 1 skipped, 1 missing" in text
    assert "  - f vs ray / ray: ray is not installed" in text
    assert "not in this file (not run): 2: g/snakepit, g/peer" in text
    assert all(line == line.rstrip() for line in lines)


def _bench_file(path: Path, rows: list[dict[str, Any]], skipped: list[dict[str, str]]) -> Path:
    path.write_text(json.dumps({"benchmarks": rows, "skipped": skipped}))
    return path


def test_load_results_reads_medians_metrics_and_skips(tmp_path: Path) -> None:
    rows = [
        {
            "extra_info": {"case": "d", "impl": "snakepit", "metrics": {"p99": 0.002}},
            "stats": {"median": 1.0, "q1": 0.5, "q3": 1.5},
        },
        {"extra_info": {}, "stats": {"median": 9.0}},  # not a catalogue benchmark
    ]
    skipped = [{"case": "f", "impl": "ray", "reason": "ray is not installed"}]
    found = load_results(_bench_file(tmp_path / "r.json", rows, skipped))
    assert found.figures == {
        ("d", "snakepit", "median"): 1.0,
        ("d", "snakepit", "q1"): 0.5,
        ("d", "snakepit", "q3"): 1.5,
        ("d", "snakepit", "p99"): 0.002,
    }
    assert found.medians() == {("d", "snakepit"): 1.0}
    assert found.skipped == [Skip("f", "ray", "ray is not installed")]


def test_skipped_impls_give_the_file_s_reason_then_the_catalogue_s() -> None:
    nothing = timed_only(Timed(lambda: None))
    case = Case(
        "x",
        "x",
        (
            Impl("snakepit", "s", nothing),
            Impl("slow", "too slow", nothing, skip="takes minutes"),
            Impl("absent", "a", nothing, requires=("snakepit_no_such_peer",)),
            Impl("ray", "r", nothing),
            Impl("later", "l", nothing),
        ),
    )
    found = BenchFile(
        figures={("x", "snakepit", "median"): 1.0},
        skipped=[Skip("x", "ray", "heavy case: runs when benchmarks are timed")],
    )
    with_reason, absent = skipped_impls([case], found)
    assert with_reason == [
        Skip("x", "slow", "takes minutes"),
        Skip("x", "absent", "snakepit_no_such_peer is not installed"),
        Skip("x", "ray", "heavy case: runs when benchmarks are timed"),
    ]
    assert absent == [("x", "later")]


def test_every_new_goal_of_issue_13_has_its_target() -> None:
    """Each row of the issue's table is a target with the issue's limit."""
    by_label = {target.label: target for target in cases.TARGETS}
    expected = {
        "fresh 1 GiB arg, sum / np.copyto": 1.2,
        "fresh 1 GiB arg, sum / Ray": 1.0,
        "echo of shared 1 GiB / np.copyto": 2.0,
        "echo of shared 1 GiB / Ray": 1.0,
        "no-op call / os.pipe ping-pong": 3.0,
        "call with a shared 1 KiB array / no-op call": 1.25,
        "start-up (absolute)": 0.150,
        "crash + respawn, 1 worker (median)": 0.050,
        "no-op, default spin / no spin, one busy process on the box": 1.0,
        "no-op, default spin / no spin, idle box": 1.0,
        "1M small dicts as an argument / pickle dumps+loads": 1.2,
        "20,000 no-op calls from 4 threads: time / PPE": 0.5,
        "20,000 no-op calls from 4 threads: p99 latency / PPE's": 1.0,
        "map 2000 items, chunksize 100": 1.0,
    }
    for label, limit in expected.items():
        assert by_label[label].limit == pytest.approx(limit), label
    assert by_label["20,000 no-op calls from 4 threads: p99 latency / PPE's"].metric == "p99"
    assert by_label["start-up / loky"].baseline == ("startup", "loky")
    assert by_label["start-up / PPE (fork)"].baseline == ("startup", "ppe-fork")
    for size in ("1 MiB", "16 MiB", "64 MiB", "256 MiB"):
        assert by_label[f"inline bytes argument {size}"].limit == 1.0
    assert by_label["inline 64 arrays of 512 KiB argument"].limit == 1.0


def test_report_script_lists_skipped_peers(tmp_path: Path) -> None:
    rows = [
        {"extra_info": {"case": "fresh-arg-1GiB", "impl": impl}, "stats": {"median": median}}
        for impl, median in (("snakepit", 0.2), ("copy", 0.1))
    ]
    skipped = [{"case": "fresh-arg-1GiB", "impl": "ray", "reason": "ray is not installed"}]
    results = _bench_file(tmp_path / "results.json", rows, skipped)
    done = subprocess.run(
        [sys.executable, str(REPORT), str(results), "--no-plot"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    line = next(line for line in lines if line.startswith("fresh 1 GiB arg, sum / np.copyto "))
    assert "200 ms" in line
    assert "100 ms" in line
    assert line.split()[-1] == "FAIL"
    assert "<= 1.2 (within 1.2x)" in line
    line = next(line for line in lines if line.startswith("fresh 1 GiB arg, sum / Ray"))
    assert line.split()[-1] == "SKIPPED"
    assert "  - fresh-arg-1GiB / ray: ray is not installed" in done.stdout
