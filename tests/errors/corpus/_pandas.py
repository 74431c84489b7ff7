"""pandas, raised at test time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from snakepit.errors import (
    DtypeError,
    PythonError,
    ShapeError,
)

from ._case import (
    Case,
    _case,
)


def pandas_cases() -> Iterator[Case]:
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        return
    c = "pandas"

    def frame(n: int) -> Any:
        return pd.DataFrame({"a": range(n)})

    yield _case(
        c,
        "assign-column",
        lambda: frame(3).__setitem__("b", [1, 2]),
        ShapeError,
        shapes=((2,), (3,)),
        operation="length",
    )
    yield _case(
        c,
        "frame-from-dict",
        lambda: pd.DataFrame({"a": [1, 2, 3], "b": [1, 2]}),
        ShapeError,
        shapes=(),
        operation="length",
    )
    yield _case(
        c,
        "series-index",
        lambda: pd.Series([1, 2, 3], index=[1, 2]),
        ShapeError,
        shapes=((3,), (2,)),
        operation="length",
    )
    two = pd.DataFrame({"a": [1], "b": [2]})
    yield _case(
        c,
        "set-columns",
        lambda: setattr(two, "columns", ["x"]),
        ShapeError,
        shapes=((2,), (1,)),
        operation="length",
    )
    yield _case(
        c,
        "set-index",
        lambda: setattr(frame(2), "index", [1, 2, 3]),
        ShapeError,
        shapes=((2,), (3,)),
        operation="length",
    )
    values = np.ones((3, 4))
    yield _case(
        c,
        "frame-from-array",
        lambda: pd.DataFrame(values, columns=["a", "b"]),
        ShapeError,
        shapes=((3, 4), (3, 2)),
    )
    yield _case(
        c,
        "assign-columns",
        lambda: frame(2).__setitem__(["a", "b"], np.ones((2, 3))),
        ShapeError,
        shapes=(),
        operation="length",
    )
    grid = np.ones((2, 2))
    yield _case(
        c,
        "series-from-2d",
        lambda: pd.Series(grid),
        ShapeError,
        shapes=(grid.shape,),
        pair=(grid.shape, None),
        operation="ndim",
    )
    yield _case(c, "missing-column", lambda: frame(1)["b"], PythonError)
    labelled = pd.DataFrame({"a": [1]}, index=["x"])
    yield _case(c, "missing-label", lambda: labelled.loc["y"], PythonError)
    yield _case(c, "iloc", lambda: pd.Series([1, 2]).iloc[5], PythonError)
    yield _case(c, "astype", lambda: pd.Series(["a"]).astype(int), PythonError)
    yield _case(
        c, "merge-no-key", lambda: pd.merge(frame(1), pd.DataFrame({"b": [1]})), PythonError
    )
    left, right = pd.DataFrame({"k": [1]}), pd.DataFrame({"k": ["1"]})
    yield _case(
        c,
        "merge-key-dtypes",
        lambda: pd.merge(left, right, on="k"),
        DtypeError,
        dtypes=(str(left["k"].dtype), str(right["k"].dtype)),
    )
    numbers, strings = pd.Series([1]), pd.Series(["a"])
    if int(pd.__version__.split(".")[0]) >= 3:  # pandas 3 names the dtypes
        yield _case(
            c,
            "add-str",
            lambda: numbers + strings,
            DtypeError,
            dtypes=(str(strings.dtype), str(numbers.dtype)),
        )
    else:  # pragma: no cover - pandas 2 raises Python's own TypeError
        yield _case(c, "add-str", lambda: numbers + strings, PythonError)
    yield _case(c, "to-datetime", lambda: pd.to_datetime(["not a date"]), PythonError)
    yield _case(c, "concat-axis", lambda: pd.concat([frame(1), frame(1)], axis=2), PythonError)
    categories = pd.Series(["a"], dtype="category")
    yield _case(c, "categories", lambda: categories.cat.add_categories(["a"]), PythonError)
    yield _case(c, "groupby-key", lambda: frame(1).groupby("zzz"), PythonError)
    yield _case(c, "read-csv", lambda: pd.read_csv("/nonexistent/snakepit/x.csv"), PythonError)
