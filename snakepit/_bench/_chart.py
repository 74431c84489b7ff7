"""The benchmark chart: snakepit's speed-up over each peer, read at a glance.

One row per (case, peer): a bar on a log axis from the baseline 1.0 (as fast
as the peer) to the speed-up, peer median / snakepit median, so a longer bar
is a bigger difference either way (green right: snakepit faster; red left:
slower). The whisker is the spread from the quartiles; the right-hand column
gives the factor and both absolute medians; the caption names the machine.
matplotlib is optional: :func:`speedup_chart` returns False without it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FASTER, SLOWER, FLOOR = "#2e7d32", "#c62828", "#78909c"


@dataclass(frozen=True)
class SpeedRow:
    """snakepit against one peer on one case, from the same run (seconds)."""

    case: str
    peer: str
    snakepit: float
    baseline: float
    #: The lowest and highest speed-up the quartiles allow, or None.
    spread: tuple[float, float] | None = None
    #: A floor (np.copyto, a raw pipe): a physical limit, not a competitor.
    floor: bool = False

    @property
    def speedup(self) -> float:
        """Peer median / snakepit median: above 1, snakepit is faster."""
        return self.baseline / self.snakepit


def format_factor(speedup: float) -> str:
    """``12x faster``, ``1.3x faster``, ``2.1x slower``, ``same``."""
    if math.isclose(speedup, 1.0, rel_tol=0.005):
        return "same"
    factor = speedup if speedup > 1 else 1 / speedup
    digits = (
        f"{factor:.0f}" if factor >= 10 else f"{factor:.2g}" if factor < 1.1 else f"{factor:.1f}"
    )
    return f"{digits}x {'faster' if speedup > 1 else 'slower'}"


def format_duration(seconds: float) -> str:
    """Three significant digits in s, ms, µs or ns (``1.23 ms``, ``456 µs``)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _tick(value: float, _position: object = None) -> str:
    # Short labels: 1000x and up as powers of ten, so decade ticks never overlap.
    if value >= 1000 or value <= 1e-3:
        return f"1e{round(math.log10(value))}x"
    return f"{value:g}x" if value >= 1 else f"1/{1 / value:g}x"


def speedup_chart(rows: Sequence[SpeedRow], path: Path, title: str, caption: str) -> bool:
    """Write the chart of ``rows`` as a PNG; False when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    values = [row.speedup for row in rows] or [1.0]
    lows = [row.spread[0] if row.spread else row.speedup for row in rows] or [1.0]
    highs = [row.spread[1] if row.spread else row.speedup for row in rows] or [1.0]
    left = 10 ** math.floor(math.log10(min(0.5, *values, *lows)))
    right = 10 ** math.ceil(math.log10(max(2.0, *values, *highs)))
    height = 0.34 * max(len(rows), 1) + 1.9
    fig, ax = plt.subplots(figsize=(13, height))
    try:
        _draw(ax, rows)
        ax.set_xscale("log")
        ax.set_xlim(left, right)
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="black", linewidth=1.2)
        ax.grid(axis="x", which="major", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_yticks(range(len(rows)), [f"{row.case}  vs {row.peer}" for row in rows])
        ax.tick_params(axis="y", labelsize=8.5, length=0)
        ax.set_xlabel(
            "speed-up = peer median / snakepit median, same run "
            "(log scale; right of 1x: snakepit is faster)"
        )
        ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.text(0.01, 0.01, caption, fontsize=8, color="#444444", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.9 / height, 1, 1))
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return True


def _draw(ax: Any, rows: Sequence[SpeedRow]) -> None:
    for index, row in enumerate(rows):
        color = FLOOR if row.floor else FASTER if row.speedup >= 1 else SLOWER
        ax.barh(index, row.speedup - 1.0, left=1.0, height=0.62, color=color, alpha=0.85)
        if row.spread is not None:
            low, high = row.spread
            ax.plot([low, high], [index, index], color="black", linewidth=1.1)
            ax.plot([low, low], [index - 0.15, index + 0.15], color="black", linewidth=1.1)
            ax.plot([high, high], [index - 0.15, index + 0.15], color="black", linewidth=1.1)
        text = (
            f"{format_factor(row.speedup)}{'  (floor)' if row.floor else ''}   "
            f"{format_duration(row.snakepit)} vs {format_duration(row.baseline)}"
        )
        ax.annotate(
            text,
            xy=(1.0, index),
            xycoords=("axes fraction", "data"),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
            color=color if not row.floor else "#37474f",
            annotation_clip=False,
        )


def machine_caption(machine: dict[str, Any], extra: str = "") -> str:
    """One line naming the machine a pytest-benchmark file was measured on."""
    cpu = machine.get("cpu") or {}
    brand = cpu.get("brand_raw") or machine.get("processor") or "unknown CPU"
    cores = cpu.get("count")
    python = machine.get("python_version") or "?"
    system = " ".join(str(machine.get(k, "")) for k in ("system", "release")).strip()
    parts = [
        f"Machine: {brand}",
        f"{cores} logical CPUs" if cores else "",
        f"Python {python} ({machine.get('python_implementation', 'CPython')})",
        system,
    ]
    return ", ".join(p for p in parts if p) + (f". {extra}" if extra else "")
