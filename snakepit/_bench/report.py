"""Tables, JSON and charts of both benchmark runners.

- ``snakepit bench``: a :class:`BenchReport` (each case's snakepit median and
  its peers', same run) as a table (:func:`format_table`), as data
  (:func:`report_json`) and as a chart of the ratios (:func:`write_plot`);
- ``bench/report.py``: the figures of a pytest-benchmark JSON file
  (:func:`load_results`: medians, other metrics such as p99, and what was
  skipped and why) held to the catalogue's targets (:func:`evaluate`,
  :func:`skipped_impls`, :func:`render`, :func:`plot_targets`).

matplotlib is optional: the chart functions return False without it.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snakepit._bench._chart import SpeedRow, machine_caption, speedup_chart
from snakepit._bench._model import WORKERS, Case, Key, Target, size_label

RATIO_MEANING = "snakepit median / peer median, same run (below 1: snakepit is faster)"

# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Measurement:
    """One implementation's median on one case, in seconds."""

    impl: str
    label: str
    median: float
    rounds: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseResult:
    """A case: snakepit's measurement and its peers', all from the same run."""

    case: str
    title: str
    snakepit: Measurement
    peers: tuple[Measurement, ...]

    def ratio(self, peer: Measurement) -> float:
        """snakepit's median divided by ``peer``'s (below 1: snakepit is faster)."""
        return self.snakepit.median / peer.median


@dataclass(frozen=True)
class Skip:
    """An implementation (or a whole case) that was not measured, and why."""

    case: str
    impl: str
    reason: str


@dataclass
class BenchReport:
    """Everything one ``snakepit bench`` run measured."""

    cases: list[CaseResult] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------- formatting


def format_seconds(seconds: float) -> str:
    """A duration with three significant digits in s, ms, us or ns."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_ratio(ratio: float) -> str:
    """``0.0123 (81.3x faster)`` or ``1.8 (1.8x slower)``."""
    if ratio < 1:
        return f"{ratio:.3g} ({1 / ratio:.3g}x faster)"
    if ratio > 1:
        return f"{ratio:.3g} ({ratio:.3g}x slower)"
    return "1 (same)"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``header``, a rule and ``rows``, left-aligned in columns, no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return text.rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="  - ", subsequent_indent="    ")


def format_table(report: BenchReport) -> str:
    """The report as a plain-text table, then its skips and notes."""
    header = ("case", "implementation", "median", "rounds", "snakepit / peer")
    rows: list[tuple[str, ...]] = []
    for result in report.cases:
        own = result.snakepit
        rows.append(
            (result.title, own.label, format_seconds(own.median), str(own.rounds), "reference")
        )
        for peer in result.peers:
            rows.append(
                (
                    "",
                    peer.label,
                    format_seconds(peer.median),
                    str(peer.rounds),
                    format_ratio(result.ratio(peer)),
                )
            )
    out = [f"ratio = {RATIO_MEANING}", "", *_columns(header, rows)]
    if report.skipped:
        out += ["", "skipped:"]
        out += [_bullet(f"{skip.case} / {skip.impl}: {skip.reason}") for skip in report.skipped]
    if report.notes:
        out += ["", "notes:"]
        out += [_bullet(note) for note in report.notes]
    return "\n".join(out)


def format_environment(environment: dict[str, Any]) -> str:
    """One line naming what the numbers were measured on."""
    free = environment.get("shm_free_bytes")
    shm = f", /dev/shm {size_label(free)} free" if isinstance(free, int) else ""
    return (
        f"snakepit bench: snakepit {environment.get('snakepit')}, "
        f"Python {environment.get('python')}, {environment.get('platform')}, "
        f"{environment.get('cpus')} CPUs{shm}, {WORKERS} workers per executor"
    )


def report_json(report: BenchReport) -> dict[str, Any]:
    """Every measurement as data: case, impl, median (seconds), rounds, ratio.

    A peer's ``ratio`` is snakepit's median over its median; snakepit's own
    rows have ratio 1 (each case's reference).
    """
    measurements: list[dict[str, Any]] = []
    for result in report.cases:
        for measured in (result.snakepit, *result.peers):
            measurements.append(
                {
                    "case": result.case,
                    "title": result.title,
                    "impl": measured.impl,
                    "label": measured.label,
                    "median": measured.median,
                    "rounds": measured.rounds,
                    "ratio": result.ratio(measured),
                    "metrics": measured.metrics,
                }
            )
    return {
        "ratio": RATIO_MEANING,
        "median_unit": "seconds",
        "environment": report.environment,
        "measurements": measurements,
        "skipped": [vars(skip) for skip in report.skipped],
        "notes": report.notes,
    }


# ------------------------------------------------------------------ charts


@dataclass(frozen=True)
class _Bar:
    label: str
    value: float
    color: str
    note: str = ""
    tick: float | None = None  # a target, drawn as a black tick across the bar


def _bar_chart(bars: Sequence[_Bar], path: Path, xlabel: str, title: str, height: float) -> bool:
    """A horizontal bar chart (log scale, a dotted line at 1); False without matplotlib."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, height * max(len(bars), 1) + 1.6))
    try:
        ax.barh([b.label for b in bars], [b.value for b in bars], color=[b.color for b in bars])
        for index, bar in enumerate(bars):
            if bar.note:
                ax.annotate(
                    bar.note,
                    (bar.value, index),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
            if bar.tick is not None:
                ax.plot([bar.tick] * 2, [index - 0.4, index + 0.4], color="black")
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linestyle=":", linewidth=1)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return True


def write_plot(report: BenchReport, path: Path) -> bool:
    """A PNG of snakepit's speed-up over every peer; False when matplotlib is missing."""
    rows = [
        SpeedRow(result.title, peer.label, result.snakepit.median, peer.median, None,
                 _is_floor(peer.label))
        for result in report.cases
        for peer in result.peers
    ]  # fmt: skip
    caption = f"Machine: {format_environment(report.environment).removeprefix('snakepit bench: ')}"
    return speedup_chart(rows, path, "snakepit bench: peers measured in the same run", caption)


# --------------------------------------------- targets over pytest-benchmark


#: ``(case, impl, metric)``: a figure of a pytest-benchmark file, in seconds.
FigureKey = tuple[str, str, str]


@dataclass(frozen=True)
class Row:
    """A target and what the benchmark file says about it."""

    target: Target
    subject: float | None
    baseline: float | None
    value: float | None  # the ratio, or the subject's figure without a baseline
    verdict: str  # PASS, FAIL, INFO, SKIPPED (a side was skipped, see why) or MISSING
    why: str = ""  # the skip reason of a SKIPPED row
    #: The value from the quartiles (subject q1 / baseline q3 .. q3 / q1): the spread.
    spread: tuple[float, float] | None = None


@dataclass
class BenchFile:
    """What a pytest-benchmark JSON file holds: every figure, and what was skipped."""

    figures: dict[FigureKey, float] = field(default_factory=dict)
    skipped: list[Skip] = field(default_factory=list)
    #: pytest-benchmark's ``machine_info``: CPU, Python, system.
    machine: dict[str, Any] = field(default_factory=dict)

    def medians(self) -> dict[Key, float]:
        """The medians alone, by ``(case, impl)``."""
        return {(c, i): v for (c, i, metric), v in self.figures.items() if metric == "median"}


def load_results(path: Path) -> BenchFile:
    """The figures of a pytest-benchmark JSON file (medians and ``extra_info.metrics``).

    Benchmarks without ``extra_info = {case, impl}`` are ignored; ``skipped``
    is what ``bench/conftest.py`` adds: ``[{case, impl, reason}]``.
    """
    data = json.loads(path.read_text())
    found = BenchFile(machine=dict(data.get("machine_info") or {}))
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        case, impl = info.get("case"), info.get("impl")
        if not case or not impl:
            continue
        key = (str(case), str(impl))
        stats = bench["stats"]
        found.figures[(*key, "median")] = float(stats["median"])
        for quartile in ("q1", "q3"):
            if quartile in stats:
                found.figures[(*key, quartile)] = float(stats[quartile])
        for metric, value in (info.get("metrics") or {}).items():
            found.figures[(*key, str(metric))] = float(value)
    for skip in data.get("skipped", []):
        found.skipped.append(Skip(str(skip["case"]), str(skip["impl"]), str(skip["reason"])))
    return found


def load_medians(path: Path) -> dict[Key, float]:
    """Median seconds of every benchmark in a pytest-benchmark JSON file, by (case, impl)."""
    return load_results(path).medians()


def evaluate(
    targets: Sequence[Target], figures: dict[FigureKey, float], skipped: Sequence[Skip] = ()
) -> list[Row]:
    """Each target's verdict on ``figures``, by ``(case, impl, metric)``.

    A target with a side not in ``figures`` is SKIPPED when ``skipped`` says
    why (for that implementation, or for its whole case), else MISSING.
    """
    reasons = {(skip.case, skip.impl): skip.reason for skip in skipped}

    def why(side: Key | None) -> str:
        if side is None:
            return ""
        return reasons.get(side) or reasons.get((side[0], "all"), "")

    rows = []
    for target in targets:
        subject = figures.get((*target.subject, target.metric))
        baseline = None
        if target.baseline is not None:
            baseline = figures.get((*target.baseline, target.metric))
        value: float | None
        reason = ""
        if subject is None or (target.baseline is not None and baseline is None):
            reason = why(target.subject if subject is None else None) or why(target.baseline)
            value, verdict = None, "SKIPPED" if reason else "MISSING"
            spread = None
        else:
            value = subject / baseline if baseline is not None else subject
            spread = _spread(target, figures)
            if target.limit is None:
                verdict = "INFO"
            else:
                verdict = "PASS" if value <= target.limit else "FAIL"
        rows.append(Row(target, subject, baseline, value, verdict, reason, spread))
    return rows


def _spread(target: Target, figures: dict[FigureKey, float]) -> tuple[float, float] | None:
    """The lowest and highest value the quartiles allow, for a target on medians."""
    if target.metric != "median":
        return None
    low, high = figures.get((*target.subject, "q1")), figures.get((*target.subject, "q3"))
    if low is None or high is None:
        return None
    if target.baseline is None:
        return low, high
    base_low = figures.get((*target.baseline, "q1"))
    base_high = figures.get((*target.baseline, "q3"))
    if not base_low or not base_high:
        return None
    return low / base_high, high / base_low


def skipped_impls(
    cases: Sequence[Case], found: BenchFile
) -> tuple[list[Skip], list[tuple[str, str]]]:
    """The implementations of ``cases`` not measured in ``found``.

    Returns those with a reason (from the file, or the catalogue's own
    ``Impl.skip`` and ``Impl.missing``), and the ``(case, impl)`` of those
    simply not in the file (a run of part of the suite).
    """
    measured = found.medians()
    reasons = {(skip.case, skip.impl): skip.reason for skip in found.skipped}
    with_reason: list[Skip] = []
    absent: list[tuple[str, str]] = []
    for case in cases:
        for impl in case.impls:
            key = (case.name, impl.impl)
            if key in measured:
                continue
            reason = reasons.get(key) or impl.missing()
            if reason:
                with_reason.append(Skip(case.name, impl.impl, reason))
            else:
                absent.append(key)
    return with_reason, absent


def _seconds_or_dash(seconds: float | None) -> str:
    return "-" if seconds is None else format_seconds(seconds)


def _format_value(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.target.baseline is None:
        return format_seconds(row.value)
    speedup = f" ({1 / row.value:.3g}x faster)" if 0 < row.value < 1 else ""
    return f"{row.value:.3g}{speedup}"


def _format_spread(row: Row) -> str:
    if row.spread is None:
        return "-"
    low, high = row.spread
    if row.target.baseline is None:
        return f"{format_seconds(low)}-{format_seconds(high)}"
    return f"{low:.3g}-{high:.3g}"


def _format_limit(target: Target) -> str:
    if target.limit is None:
        return "-"
    bound = format_seconds(target.limit) if target.baseline is None else f"{target.limit:.3g}"
    return f"<= {bound}" + (f" ({target.goal})" if target.goal else "")


def _format_check(row: Row) -> str:
    return row.target.label + ("" if row.target.metric == "median" else f" [{row.target.metric}]")


def render(
    rows: Sequence[Row], skipped: Sequence[Skip] = (), absent: Sequence[tuple[str, str]] = ()
) -> str:
    """The verdicts as a table, the counts, then what was skipped and why."""
    header = ("check", "snakepit", "baseline", "ratio", "IQR range", "target", "result")
    cells = [
        (
            _format_check(row),
            _seconds_or_dash(row.subject),
            _seconds_or_dash(row.baseline),
            _format_value(row),
            _format_spread(row),
            _format_limit(row.target),
            row.verdict,
        )
        for row in rows
    ]
    out = _columns(header, cells)
    verdicts = ("PASS", "FAIL", "INFO", "SKIPPED", "MISSING")
    counts = {v: sum(r.verdict == v for r in rows) for v in verdicts}
    out.append("")
    out.append(
        f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['INFO']} for information, "
        f"{counts['SKIPPED']} skipped, {counts['MISSING']} missing "
        "(ratio = snakepit figure / baseline figure, lower is better; IQR range = from "
        "snakepit's first quartile over the baseline's third to its third over the first)"
    )
    if skipped:
        out += ["", "skipped (not measured in this file):"]
        out += [_bullet(f"{skip.case} / {skip.impl}: {skip.reason}") for skip in skipped]
    if absent:
        names = ", ".join(f"{case}/{impl}" for case, impl in absent)
        out += ["", _bullet(f"not in this file (not run): {len(absent)}: {names}")]
    return "\n".join(out)


def plot_targets(rows: Sequence[Row], path: Path) -> bool:
    """A bar chart of the ratios and their targets; False when matplotlib is missing."""
    colors = {"PASS": "tab:green", "FAIL": "tab:red", "INFO": "tab:gray"}
    bars = [
        _Bar(r.target.label, r.value, colors.get(r.verdict, "tab:gray"), tick=r.target.limit)
        for r in rows
        if r.value is not None and r.target.baseline is not None
    ]
    return _bar_chart(
        bars,
        path,
        "snakepit median / baseline median (log; black tick = target)",
        "snakepit benchmarks",
        0.45,
    )


#: Cases left out of the speed-up chart: snakepit against itself or against a
#: bare function call (overheads, not peers), and the ``preload`` variants of
#: the start-up and respawn cases (the defaults stand for them).
NOT_CHARTED_GROUPS = frozenset({"telemetry-bus", "spin", "hardware-detect"})


def _is_floor(label: str) -> bool:
    return "floor" in label or label.startswith(("np.copyto", "pickle.dumps"))


def speed_rows(cases: Sequence[Case], found: BenchFile) -> list[SpeedRow]:
    """snakepit against each peer measured in ``found``, in catalogue order."""
    rows = []
    for case in cases:
        if case.group in NOT_CHARTED_GROUPS or "preload" in case.name or len(case.impls) < 2:
            continue
        own = case.impls[0].impl
        subject = found.figures.get((case.name, own, "median"))
        if subject is None or case.name == "telemetry-call-1ms":
            continue
        for impl in case.impls[1:]:
            baseline = found.figures.get((case.name, impl.impl, "median"))
            if baseline is None:
                continue
            quartiles = [
                found.figures.get(key)
                for key in (
                    (case.name, impl.impl, "q1"),
                    (case.name, own, "q3"),
                    (case.name, impl.impl, "q3"),
                    (case.name, own, "q1"),
                )
            ]
            spread = None
            if all(quartiles):
                b1, s3, b3, s1 = (float(q) for q in quartiles if q)
                spread = (b1 / s3, b3 / s1)
            rows.append(
                SpeedRow(case.title, impl.label, subject, baseline, spread, _is_floor(impl.label))
            )
    return rows


def plot_speedups(cases: Sequence[Case], found: BenchFile, path: Path) -> bool:
    """The speed-up chart of a pytest-benchmark file; False when matplotlib is missing."""
    rows = speed_rows(cases, found)
    caption = machine_caption(
        found.machine,
        f"pytest-benchmark medians, {WORKERS} workers per executor unless the case says "
        "otherwise; whiskers: speed-up from the quartiles (peer Q1 / snakepit Q3 to "
        "peer Q3 / snakepit Q1); grey: a physical floor, not a peer.",
    )
    return speedup_chart(rows, path, "snakepit vs its peers, measured in the same run", caption)
