"""Worker-side functions for the polars tests (imported where polars is)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl


def shared_mapping_of(address: int) -> str | None:
    """The path of this process's mapping that holds ``address``, if any."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, stop = (int(part, 16) for part in fields[0].split("-"))
            if start <= address < stop:
                return fields[5] if len(fields) > 5 else ""
    return None


def numeric_buffers(frame: pl.DataFrame | pl.Series) -> list[str | None]:
    """Where each numeric column's values lie: the mapping's path."""
    columns = [frame] if isinstance(frame, pl.Series) else frame.get_columns()
    places = []
    for column in columns:
        if column.dtype.is_numeric() and column.null_count() == 0:
            values = column.to_numpy(allow_copy=False)
            places.append(shared_mapping_of(values.ctypes.data))
    return places


def kind_of(value: Any) -> str:
    return type(value).__module__.split(".")[0] + "." + type(value).__name__


def make_frame(rows: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "score": np.linspace(0.0, 1.0, rows),
            "name": [f"n{i % 97}" for i in range(rows)],
        }
    )


def column_total(frame: pl.DataFrame, column: str) -> float:
    return float(frame[column].sum())
