"""The benchmark chart: speed-ups from 1x, spread, both medians, the machine."""

from __future__ import annotations

import struct
from pathlib import Path

from snakepit._bench._chart import format_duration, format_factor, machine_caption
from snakepit._bench.cases import CASES
from snakepit._bench.report import BenchFile, plot_speedups, speed_rows


def _file() -> BenchFile:
    found = BenchFile(machine={"cpu": {"brand_raw": "Test CPU 9000", "count": 2},
                               "python_version": "3.11.7", "system": "Linux"})  # fmt: skip
    figures = {
        ("noop", "snakepit", 100e-6, 90e-6, 110e-6),
        ("noop", "ppe", 400e-6, 380e-6, 420e-6),
        ("noop", "pipe", 20e-6, 19e-6, 21e-6),
        ("spin-idle", "snakepit", 1e-4, 1e-4, 1e-4),  # snakepit against itself: left out
        ("spin-idle", "no-spin", 2e-4, 2e-4, 2e-4),
    }
    for case, impl, median, q1, q3 in figures:
        found.figures[(case, impl, "median")] = median
        found.figures[(case, impl, "q1")] = q1
        found.figures[(case, impl, "q3")] = q3
    return found


def test_rows_are_peer_over_snakepit_with_the_quartile_spread() -> None:
    rows = {row.peer: row for row in speed_rows(CASES, _file())}
    assert set(rows) == {"ProcessPoolExecutor", "raw os.pipe ping-pong, two processes (floor)"}
    ppe = rows["ProcessPoolExecutor"]
    assert ppe.speedup == 4.0
    assert ppe.spread == (380e-6 / 110e-6, 420e-6 / 90e-6)
    assert not ppe.floor
    pipe = rows["raw os.pipe ping-pong, two processes (floor)"]
    assert pipe.floor
    assert round(pipe.speedup, 6) == 0.2


def test_numbers_read_as_a_person_writes_them() -> None:
    assert format_factor(4.0) == "4.0x faster"
    assert format_factor(0.2) == "5.0x slower"
    assert format_factor(123.4) == "123x faster"
    assert format_factor(1.001) == "same"
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(4.56e-6) == "4.56 µs"
    caption = machine_caption(_file().machine)
    assert "Test CPU 9000" in caption
    assert "2 logical CPUs" in caption


def test_chart_is_a_png(tmp_path: Path) -> None:
    target = tmp_path / "chart.png"
    assert plot_speedups(CASES, _file(), target) is True
    header = target.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width > 1000
    assert height > 200
