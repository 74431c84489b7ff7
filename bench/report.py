"""Turn pytest-benchmark JSON into snakepit's performance targets.

Usage::

    pytest bench --benchmark-only --benchmark-json=results.json
    python bench/report.py results.json [--plot chart.png | --no-plot] [--strict]

Prints, for every target of the benchmark suite, the snakepit median, the
peer's median (or the baseline's), their ratio, the target and PASS/FAIL.
Rows marked INFO have no target. With ``--strict`` the exit status is 1 when
a target fails or its benchmarks are missing from the file. A PNG bar chart of
the ratios is written when matplotlib is importable (it is optional).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str]  # (case, impl) as the benchmarks record them in extra_info


@dataclass(frozen=True)
class Check:
    """One line of the report.

    ``ratio``: ``subject`` median / ``baseline`` median, which must be at most
    ``target``. Without a baseline the subject's median (seconds) is checked
    against ``target`` instead. ``target`` None: shown for information only.
    """

    label: str
    subject: Key
    baseline: Key | None
    target: float | None
    goal: str = ""


CHECKS: tuple[Check, ...] = (
    Check(
        "alloc 1 KiB: arena / SharedMemory",
        ("alloc-1KiB", "snakepit"),
        ("alloc-1KiB", "peer"),
        None,
    ),
    Check(
        "alloc 1 MiB: arena / SharedMemory",
        ("alloc-1MiB", "snakepit"),
        ("alloc-1MiB", "peer"),
        1 / 20,
        ">= 20x faster",
    ),
    Check(
        "alloc 100 MiB: arena / SharedMemory",
        ("alloc-100MiB", "snakepit"),
        ("alloc-100MiB", "peer"),
        None,
    ),
    Check(
        "share 100 MiB / np.copyto",
        ("share-100MiB", "snakepit"),
        ("share-100MiB", "peer"),
        1.5,
        "within 1.5x",
    ),
    Check("no-op call", ("noop", "snakepit"), ("noop", "peer"), 0.5, "<= 0.5x"),
    Check(
        "shared arg 1 KiB, read one",
        ("shared-arg-1KiB", "snakepit"),
        ("shared-arg-1KiB", "peer"),
        None,
    ),
    Check(
        "shared arg 100 MiB, read one",
        ("shared-arg-100MiB", "snakepit"),
        ("shared-arg-100MiB", "peer"),
        1 / 100,
        ">= 100x faster",
    ),
    Check(
        "snakepit shared arg 1 GiB / 1 KiB",
        ("shared-arg-1GiB", "snakepit"),
        ("shared-arg-1KiB", "snakepit"),
        2.0,
        "within 2x",
    ),
    Check(
        "fresh 100 MiB arg, sum",
        ("fresh-arg-100MiB", "snakepit"),
        ("fresh-arg-100MiB", "peer"),
        1 / 5,
        ">= 5x faster",
    ),
    Check(
        "echo 100 MiB",
        ("echo-100MiB", "snakepit"),
        ("echo-100MiB", "peer"),
        1 / 5,
        ">= 5x faster",
    ),
    Check(
        "fresh torch tensor 100 MiB arg, read one",
        ("torch-fresh-100MiB", "snakepit"),
        ("torch-fresh-100MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "shared torch tensor 100 MiB arg, read one",
        ("torch-shared-100MiB", "snakepit"),
        ("torch-shared-100MiB", "peer"),
        None,
    ),
    Check(
        "Arrow table 100 MiB arg, read one",
        ("arrow-fresh-100MiB", "snakepit"),
        ("arrow-fresh-100MiB", "peer"),
        1 / 10,
        ">= 10x faster",
    ),
    Check(
        "inline bytes argument 1 MiB",
        ("inline-bytes-arg-1MiB", "snakepit"),
        ("inline-bytes-arg-1MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes argument 16 MiB",
        ("inline-bytes-arg-16MiB", "snakepit"),
        ("inline-bytes-arg-16MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes argument 64 MiB",
        ("inline-bytes-arg-64MiB", "snakepit"),
        ("inline-bytes-arg-64MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes argument 256 MiB",
        ("inline-bytes-arg-256MiB", "snakepit"),
        ("inline-bytes-arg-256MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes result 1 MiB",
        ("inline-bytes-result-1MiB", "snakepit"),
        ("inline-bytes-result-1MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes result 16 MiB",
        ("inline-bytes-result-16MiB", "snakepit"),
        ("inline-bytes-result-16MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes result 64 MiB",
        ("inline-bytes-result-64MiB", "snakepit"),
        ("inline-bytes-result-64MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline bytes result 256 MiB",
        ("inline-bytes-result-256MiB", "snakepit"),
        ("inline-bytes-result-256MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "inline 64 arrays of 512 KiB argument",
        ("inline-arrays-arg-32MiB", "snakepit"),
        ("inline-arrays-arg-32MiB", "peer"),
        1.0,
        "no slower",
    ),
    Check(
        "crash recovery, 2 workers (median)",
        ("crash-recovery", "snakepit"),
        None,
        0.100,
        "< 100 ms",
    ),
    Check(
        "crash recovery / peer rebuilds executor",
        ("crash-recovery", "snakepit"),
        ("crash-recovery", "peer"),
        None,
    ),
    Check(
        "crash + respawn, 1 worker (median)",
        ("crash-recovery-respawn", "snakepit"),
        None,
        None,
    ),
    Check(
        "1 ms call: handler work for its events / the call",
        ("telemetry-call-1ms", "events-instrumented"),
        ("telemetry-call-1ms", "snakepit"),
        0.01,
        "< 1% overhead",
    ),
    Check(
        "1 ms call end to end: all handlers / none",
        ("telemetry-call-1ms", "snakepit-instrumented"),
        ("telemetry-call-1ms", "snakepit"),
        None,
    ),
)


@dataclass(frozen=True)
class Row:
    check: Check
    subject: float | None
    baseline: float | None
    value: float | None  # the ratio, or the subject's median without a baseline
    verdict: str  # PASS, FAIL, INFO or MISSING


def load_medians(path: Path) -> dict[Key, float]:
    """Median seconds of every benchmark in the file, by (case, impl)."""
    data = json.loads(path.read_text())
    medians: dict[Key, float] = {}
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        case, impl = info.get("case"), info.get("impl")
        if not case or not impl:
            continue
        medians[(str(case), str(impl))] = float(bench["stats"]["median"])
    return medians


def evaluate(checks: Sequence[Check], medians: dict[Key, float]) -> list[Row]:
    rows = []
    for check in checks:
        subject = medians.get(check.subject)
        baseline = medians.get(check.baseline) if check.baseline is not None else None
        value: float | None
        if subject is None or (check.baseline is not None and baseline is None):
            value, verdict = None, "MISSING"
        else:
            value = subject / baseline if baseline is not None else subject
            if check.target is None:
                verdict = "INFO"
            else:
                verdict = "PASS" if value <= check.target else "FAIL"
        rows.append(Row(check, subject, baseline, value, verdict))
    return rows


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_value(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.check.baseline is None:
        return format_seconds(row.value)
    speedup = f" ({1 / row.value:.3g}x faster)" if 0 < row.value < 1 else ""
    return f"{row.value:.3g}{speedup}"


def format_target(check: Check) -> str:
    if check.target is None:
        return "-"
    bound = format_seconds(check.target) if check.baseline is None else f"{check.target:.3g}"
    return f"<= {bound}" + (f" ({check.goal})" if check.goal else "")


def render(rows: Sequence[Row]) -> str:
    header = ("check", "snakepit", "baseline", "ratio", "target", "result")
    lines = [
        (
            row.check.label,
            format_seconds(row.subject),
            format_seconds(row.baseline),
            format_value(row),
            format_target(row.check),
            row.verdict,
        )
        for row in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(cells) for cells in lines]
    counts = {v: sum(r.verdict == v for r in rows) for v in ("PASS", "FAIL", "MISSING")}
    out.append("")
    out.append(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['MISSING']} missing "
        "(ratio = snakepit median / baseline median; lower is better)"
    )
    return "\n".join(out)


def plot(rows: Sequence[Row], path: Path) -> bool:
    """Write a bar chart of the ratios to ``path``; False when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.value is not None and r.check.baseline is not None]
    colors = {"PASS": "tab:green", "FAIL": "tab:red", "INFO": "tab:gray"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.5))
    labels = [r.check.label for r in shown]
    values: list[Any] = [r.value for r in shown]
    ax.barh(labels, values, color=[colors.get(r.verdict, "tab:gray") for r in shown])
    for index, row in enumerate(shown):
        if row.check.target is not None:
            ax.plot([row.check.target] * 2, [index - 0.4, index + 0.4], color="black")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("snakepit median / baseline median (log; black tick = target)")
    ax.set_title("snakepit benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="output of pytest --benchmark-json")
    parser.add_argument("--plot", type=Path, help="PNG to write (default: RESULTS with .png)")
    parser.add_argument("--no-plot", action="store_true", help="do not write a chart")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target fails or is missing"
    )
    args = parser.parse_args(argv)
    try:
        medians = load_medians(args.results)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read {args.results}: {exc}", file=sys.stderr)
        return 2
    rows = evaluate(CHECKS, medians)
    print(render(rows))
    if not args.no_plot:
        target = args.plot or args.results.with_suffix(".png")
        if plot(rows, target):
            print(f"chart written to {target}")
        else:
            print("matplotlib is not installed: skipping the chart")
    bad = [r for r in rows if r.verdict in ("FAIL", "MISSING")]
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
