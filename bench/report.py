"""Turn pytest-benchmark JSON into snakepit's performance targets.

Usage::

    pytest bench --benchmark-only --benchmark-json=results.json
    python bench/report.py results.json [--plot chart.png | --no-plot] [--strict]

Prints, for every target of the benchmark catalogue
(``snakepit._bench.cases.TARGETS``), the snakepit figure (the median, or
another metric such as p99), the peer's or floor's (the baseline), their
ratio, the target and PASS/FAIL. Rows marked INFO have no target; SKIPPED
rows lack a side that was skipped, and the list below the table says why
(a peer not installed, a heavy case in a ``--benchmark-disable`` run, too
little /dev/shm). With ``--strict`` the exit status is 1 when a target fails
or its benchmarks are missing from the file (skipped ones do not count).
When matplotlib is importable (it is optional) it also writes a PNG chart:
snakepit's speed-up over each peer (1x = as fast), with the spread, both
medians and the machine in the caption (docs/benchmarks.png is one).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from snakepit._bench.cases import CASES, TARGETS
from snakepit._bench.report import evaluate, load_results, plot_speedups, render, skipped_impls


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("results", type=Path, help="output of pytest --benchmark-json")
    parser.add_argument("--plot", type=Path, help="PNG to write (default: RESULTS with .png)")
    parser.add_argument("--no-plot", action="store_true", help="do not write a chart")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target fails or is missing"
    )
    args = parser.parse_args(argv)
    try:
        found = load_results(args.results)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot read {args.results}: {exc}", file=sys.stderr)
        return 2
    skipped, absent = skipped_impls(CASES, found)
    rows = evaluate(TARGETS, found.figures, skipped)
    print(render(rows, skipped, absent))
    if not args.no_plot:
        target = args.plot or args.results.with_suffix(".png")
        if plot_speedups(CASES, found, target):
            print(f"chart written to {target}")
        else:
            print("matplotlib is not installed: skipping the chart")
    bad = [r for r in rows if r.verdict in ("FAIL", "MISSING")]
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
