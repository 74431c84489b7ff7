"""``snakepit bench``: one quick real run end to end, and the report's arithmetic."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from snakepit._bench import cases
from snakepit._bench import run as _bench
from snakepit._bench.report import BenchReport, CaseResult, Measurement, Skip
from snakepit.cli import build_parser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK_CASES = {
    "zero-copy-1KiB",
    "zero-copy-1MiB",
    "noop",
    "echo-10MiB",
    "crash-recovery",
    "telemetry-no-handler",
    "telemetry-one-handler",
}


def test_quick_run_prints_table_json_and_png(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    out_png = tmp_path / "bench.png"
    command = [sys.executable, "-m", "snakepit", "bench", "--quick", "--sizes", "1KiB,1MiB"]
    command += ["--json", str(out_json), "--plot", str(out_png)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "leaked" not in stderr, stderr  # e.g. the resource tracker's complaint

    # Nothing of the run is left in /dev/shm (its workers are checked by the command).
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(f"snakepit-{proc.pid}-")]
    assert not leftovers

    for title in (
        "zero-copy hand-off 1 KiB",
        "zero-copy hand-off 1 MiB",
        "no-op call round trip",
        "echo of a 10 MiB numpy array",
        "crash recovery",
        "telemetry.execute, no handler",
        "telemetry.execute, one trivial handler",
    ):
        assert title in stdout
    assert "pickle via ProcessPoolExecutor" in stdout
    assert "multiprocessing.shared_memory" in stdout
    assert "raw os.pipe ping-pong" in stdout
    assert "loky.ProcessPoolExecutor" in stdout or "noop / loky: loky is not installed" in stdout
    assert "pool start-up" not in stdout  # --quick leaves out the slow cases
    assert "BrokenProcessPool" in stdout
    assert "snakepit median / peer median" in stdout

    data = json.loads(out_json.read_text())
    by_case: dict[str, list[dict[str, object]]] = {}
    for row in data["measurements"]:
        by_case.setdefault(str(row["case"]), []).append(row)
        for key, kind in (("median", float), ("ratio", float), ("rounds", int)):
            value = row[key]
            assert isinstance(value, kind), row
            assert value > 0, row
    assert set(by_case) == QUICK_CASES
    for case, rows in by_case.items():
        impls = [row["impl"] for row in rows]
        assert impls[0] == "snakepit", case
        assert rows[0]["ratio"] == 1.0, case
        assert len(impls) >= 2, f"{case} has no peer"
    zero_copy_peers = {row["impl"] for row in by_case["zero-copy-1MiB"]}
    assert zero_copy_peers == {"snakepit", "pickle", "shared_memory"}

    assert out_png.read_bytes().startswith(PNG_SIGNATURE)


def _children_of(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def test_ctrl_c_cleans_up_pools_processes_and_shared_memory() -> None:
    """SIGINT to ``snakepit bench`` alone: it stops its workers and helpers itself."""
    command = [sys.executable, "-m", "snakepit", "bench", "--quick", "--sizes", "1KiB,1MiB"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stderr is not None
            children: dict[int, tuple[float, str]] = {}
            for line in proc.stderr:
                if "no-op call round trip" in line:  # pools, executors and the pipe child run
                    break
            deadline = time.monotonic() + 30
            while len(children) < 3 and time.monotonic() < deadline:
                for child in _children_of(proc.pid):
                    with contextlib.suppress(psutil.Error):
                        children[child.pid] = (child.create_time(), " ".join(child.cmdline()))
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 130, stderr
    assert "interrupted; pools and shared memory cleaned up" in stderr
    assert len(children) >= 3, children  # the test did see workers to clean up
    alive = []
    for pid, (created, _) in children.items():
        with contextlib.suppress(psutil.Error):
            child = psutil.Process(pid)
            if child.create_time() == created:
                alive.append(child)
    # Resource trackers see their pipe close when the command exits: a moment later.
    _, left = psutil.wait_procs(alive, timeout=10)
    assert not [(child.pid, children[child.pid][1]) for child in left]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"snakepit-{proc.pid}-")]


def _synthetic() -> BenchReport:
    return BenchReport(
        cases=[
            CaseResult(
                "zero-copy-100MiB",
                "zero-copy hand-off 100 MiB",
                Measurement("snakepit", "snakepit.Pool", 50e-6, 20),
                (
                    Measurement("pickle", "pickle via ProcessPoolExecutor", 0.1, 20),
                    Measurement("shared_memory", "multiprocessing.shared_memory", 0.025, 20),
                ),
            ),
            CaseResult(
                "telemetry-no-handler",
                "telemetry.execute, no handler",
                Measurement("snakepit", "snakepit.telemetry.execute", 80e-9, 200),
                (Measurement("empty-call", "empty function call", 40e-9, 200),),
            ),
        ],
        skipped=[Skip("zero-copy-1GiB", "all", "/dev/shm has 64 MiB free")],
        notes=["a note"],
    )


def test_ratios_and_table_from_synthetic_numbers() -> None:
    report = _synthetic()
    zero_copy, telemetry = report.cases
    assert zero_copy.ratio(zero_copy.peers[0]) == pytest.approx(5e-4)
    assert zero_copy.ratio(zero_copy.peers[1]) == pytest.approx(2e-3)
    assert telemetry.ratio(telemetry.peers[0]) == pytest.approx(2.0)

    table = _bench.format_table(report)
    lines = table.splitlines()
    assert _bench.RATIO_MEANING in lines[0]
    header = next(line for line in lines if line.startswith("case"))
    assert header.split() == ["case", "implementation", "median", "rounds", "snakepit", "/", "peer"]
    row = next(line for line in lines if "pickle via ProcessPoolExecutor" in line)
    assert "100 ms" in row
    assert "0.0005 (2e+03x faster)" in row
    row = next(line for line in lines if "multiprocessing.shared_memory" in line)
    assert "25 ms" in row
    assert "0.002 (500x faster)" in row
    row = next(line for line in lines if "empty function call" in line)
    assert "40 ns" in row
    assert "2 (2x slower)" in row
    own = next(line for line in lines if line.startswith("zero-copy hand-off 100 MiB"))
    assert "50 us" in own
    assert own.rstrip().endswith("reference")
    assert "zero-copy-1GiB / all: /dev/shm has 64 MiB free" in table
    assert "  - a note" in table
    assert all(line == line.rstrip() for line in lines)


def test_json_has_every_measurement_with_its_ratio() -> None:
    data = _bench.report_json(_synthetic())
    rows = [
        (r["case"], r["impl"], r["median"], r["rounds"], r["ratio"]) for r in data["measurements"]
    ]
    assert rows == [
        ("zero-copy-100MiB", "snakepit", 50e-6, 20, 1.0),
        ("zero-copy-100MiB", "pickle", 0.1, 20, pytest.approx(5e-4)),
        ("zero-copy-100MiB", "shared_memory", 0.025, 20, pytest.approx(2e-3)),
        ("telemetry-no-handler", "snakepit", 80e-9, 200, 1.0),
        ("telemetry-no-handler", "empty-call", 40e-9, 200, pytest.approx(2.0)),
    ]
    assert data["skipped"] == [
        {"case": "zero-copy-1GiB", "impl": "all", "reason": "/dev/shm has 64 MiB free"}
    ]
    json.dumps(data)  # serialisable as it is


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.5, "2.5 s"), (0.0123, "12.3 ms"), (4.56e-5, "45.6 us"), (7.5e-8, "75 ns")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert _bench.format_seconds(seconds) == text


def test_sizes_parse_and_print() -> None:
    assert _bench.parse_sizes("1KiB, 1MiB,100MiB,1GiB") == (1024, 1 << 20, 100 << 20, 1 << 30)
    assert _bench.parse_sizes("512,2k,3M,1MiB") == (512, 2048, 3 << 20, 1 << 20)
    assert [_bench.size_label(n) for n in (512, 1024, 100 << 20, 3 << 29)] == [
        "512 B",
        "1 KiB",
        "100 MiB",
        "1.5 GiB",
    ]
    assert _bench.size_label(1 << 30, "") == "1GiB"
    args = build_parser().parse_args(["bench", "--quick", "--sizes", "1KiB,1MiB", "--rounds", "3"])
    assert (args.quick, args.sizes, args.rounds) == (True, (1024, 1 << 20), 3)
    assert build_parser().parse_args(["bench"]).sizes == _bench.DEFAULT_SIZES


@pytest.mark.parametrize("bad", ["", "1XB", "-1KiB", "0MiB", "KiB"])
def test_bad_sizes_are_rejected(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["bench", "--sizes", bad])
    assert exited.value.code == 2
    assert "--sizes" in capsys.readouterr().err


def test_median_seconds_runs_setup_untimed() -> None:
    calls: list[str] = []
    median = _bench.median_seconds(
        lambda: calls.append("run"), 3, warmup=1, setup=lambda: calls.append("setup")
    )
    assert calls == ["setup", "run"] * 4
    assert median >= 0
    with pytest.raises(ValueError, match="rounds"):
        _bench.median_seconds(lambda: None, 0)


def test_plot_without_matplotlib_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    target = tmp_path / "chart.png"
    assert _bench.write_plot(_synthetic(), target) is False
    assert not target.exists()


def test_a_size_runs_only_with_room_in_dev_shm() -> None:
    gib = 1 << 30
    assert _bench.shm_skip_reason(gib, 3 * gib) is None
    reason = _bench.shm_skip_reason(gib, 2 * gib)
    assert reason is not None
    assert "/dev/shm has 2 GiB free" in reason
    assert "needs 3 GiB" in reason
    assert "could not be read" in str(_bench.shm_skip_reason(1024, None))


def test_every_target_names_cases_of_the_catalogue() -> None:
    keys = {(case.name, impl.impl) for case in cases.CASES for impl in case.impls}
    assert len(keys) == sum(len(case.impls) for case in cases.CASES)  # no name twice
    for target in cases.TARGETS:
        assert target.subject in keys, target
        assert target.baseline is None or target.baseline in keys, target
    for case in cases.CASES:
        assert case.impls[0].impl == "snakepit", case.name
        assert all(t.subject[0] == case.name for t in case.targets), case.name


def test_every_suite_has_its_bench_module() -> None:
    bench = Path(__file__).resolve().parents[1] / "bench"
    for suite in cases.SUITES:
        text = (bench / f"test_{suite}.py").read_text()
        assert f'params("{suite}")' in text, suite
    cli = {case.name for case in cases.cli_cases((1024, 1 << 20), 10 << 20)}
    suite_names = {case.name for case in cases.CASES}
    assert cli - suite_names == {"echo-10MiB"}  # the quick echo; the suite measures 100 MiB


def test_bench_report_checks_a_benchmark_file(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    rows = [
        {"extra_info": {"case": "noop", "impl": impl}, "stats": {"median": median}}
        for impl, median in (("snakepit", 1e-4), ("ppe", 4e-4))
    ]
    results.write_text(json.dumps({"benchmarks": rows}))
    script = Path(__file__).resolve().parents[1] / "bench" / "report.py"
    done = subprocess.run(
        [sys.executable, str(script), str(results), "--no-plot", "--strict"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # every other target is missing
    line = next(line for line in done.stdout.splitlines() if line.startswith("no-op call"))
    assert line.split()[-1] == "PASS"
    assert "0.25 (4x faster)" in line
