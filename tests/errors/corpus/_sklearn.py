"""scikit-learn, raised at test time."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import (
    DtypeError,
    PythonError,
    ShapeError,
)

from ._case import (
    Case,
    _case,
)


def sklearn_cases() -> Iterator[Case]:
    try:
        import numpy as np
        import pandas as pd
        from sklearn.cluster import KMeans
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return
    c = "sklearn"
    fitted = LinearRegression().fit(np.ones((5, 3)), np.arange(5.0))
    yield _case(
        c,
        "predict-features",
        lambda: fitted.predict(np.ones((2, 4))),
        ShapeError,
        shapes=((4,), (3,)),
        operation="features",
        dimension=1,
    )
    scaler = StandardScaler().fit(np.ones((5, 3)))
    yield _case(
        c,
        "transform-features",
        lambda: scaler.transform(np.ones((2, 7))),
        ShapeError,
        shapes=((7,), (3,)),
        operation="features",
    )
    yield _case(
        c,
        "inconsistent-samples",
        lambda: LinearRegression().fit(np.ones((5, 3)), np.ones(4)),
        ShapeError,
        shapes=((5,), (4,)),
        operation="length",
        dimension=0,
    )
    yield _case(
        c,
        "1d-X",
        lambda: LinearRegression().fit(np.ones(5), np.ones(5)),
        ShapeError,
        shapes=(),
        operation="ndim",
    )
    yield _case(
        c,
        "3d-X",
        lambda: LinearRegression().fit(np.ones((2, 2, 2)), [1, 2]),
        ShapeError,
        shapes=(),
        operation="ndim",
    )
    y2 = np.ones((4, 2))
    yield _case(
        c,
        "2d-y",
        lambda: LogisticRegression().fit(np.ones((4, 2)), y2),
        ShapeError,
        shapes=(y2.shape,),
        pair=(y2.shape, None),
        operation="ndim",
    )
    empty = np.ones((0, 2))
    yield _case(
        c,
        "no-samples",
        lambda: LinearRegression().fit(empty, []),
        ShapeError,
        shapes=(empty.shape,),
        pair=(empty.shape, None),
        operation="samples",
    )
    yield _case(
        c,
        "strings",
        lambda: LinearRegression().fit(np.array([["a"]]), [1]),
        DtypeError,
        dtypes=("numeric", "str"),
    )
    yield _case(c, "not-fitted", lambda: LinearRegression().predict(np.ones((2, 3))), PythonError)
    yield _case(
        c, "nan", lambda: LinearRegression().fit(np.array([[np.nan]]), np.ones(1)), PythonError
    )
    yield _case(
        c,
        "continuous-labels",
        lambda: LogisticRegression().fit(np.ones((4, 2)), [0.1, 0.2, 0.3, 0.4]),
        PythonError,
    )
    yield _case(
        c, "one-class", lambda: LogisticRegression().fit(np.ones((4, 2)), [1, 1, 1, 1]), PythonError
    )
    named = LinearRegression().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 3.0]}), [1, 2])
    yield _case(
        c,
        "feature-names",
        lambda: named.predict(pd.DataFrame({"a": [1.0], "c": [1.0]})),
        PythonError,
    )
    yield _case(
        c,
        "kmeans-samples",
        lambda: KMeans(n_clusters=10, n_init=1).fit(np.ones((3, 2))),
        PythonError,
    )
    yield _case(c, "split-size", lambda: train_test_split(np.ones(2), test_size=5), PythonError)
