"""More pandas, scikit-learn and PyArrow, raised at test time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from snakepit.errors import ShapeError

from ._case import Case, _case, dtype_case, plain_case, shape_case


def pandas_more_cases() -> Iterator[Case]:
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        return
    c = "pandas"

    def frame(n: int) -> Any:
        return pd.DataFrame({"a": range(n)})

    def no_shapes(name: str, fn: object) -> Case:
        return _case(c, name, fn, ShapeError, shapes=())  # type: ignore[arg-type]

    yield shape_case(
        c,
        "frame-columns-imply",
        lambda: pd.DataFrame(np.ones((3, 2)), columns=["a", "b", "c"]),
        (3, 2),
        (3, 3),
    )
    yield shape_case(
        c,
        "frame-index-imply",
        lambda: pd.DataFrame(np.ones((3, 2)), index=[0, 1]),
        (3, 2),
        (2, 2),
    )
    yield shape_case(
        c, "insert-length", lambda: frame(3).insert(1, "b", [1, 2]), (2,), (3,), operation="length"
    )
    yield shape_case(
        c, "series-index-length", lambda: pd.Series([1, 2, 3], index=[0, 1]), (3,), (2,)
    )
    yield shape_case(
        c,
        "set-index-length",
        lambda: setattr(frame(3), "index", [0]),
        (3,),
        (1,),
        operation="length",
    )
    yield no_shapes("dict-lengths", lambda: pd.DataFrame({"a": [1, 2], "b": [1]}))
    yield no_shapes("assign-two-columns", lambda: frame(3).__setitem__(["x", "y"], np.ones((3, 3))))
    # pandas 3 rejects the list as a value for the int64 column before comparing lengths
    yield plain_case(
        c, "loc-set-length", lambda: frame(3).loc.__setitem__((slice(None), "a"), [1, 2])
    )
    left, right = pd.DataFrame({"k": [1.0]}), pd.DataFrame({"k": ["1"]})
    yield dtype_case(
        c,
        "merge-float-str",
        lambda: pd.merge(left, right, on="k"),
        str(left["k"].dtype),
        str(right["k"].dtype),
    )
    yield plain_case(c, "astype-literal", lambda: pd.DataFrame({"a": ["x"]}).astype({"a": "int64"}))
    dupes = pd.DataFrame({"a": [1, 1], "b": [1, 1], "c": [1, 2]})
    yield plain_case(c, "pivot-duplicates", lambda: dupes.pivot(index="a", columns="b", values="c"))
    yield plain_case(c, "set-index-missing", lambda: frame(2).set_index("zzz"))
    yield plain_case(c, "drop-missing", lambda: frame(2).drop(columns=["zzz"]))
    yield plain_case(c, "iloc-column", lambda: frame(2).iloc[:, 5])
    yield plain_case(c, "cut-bins", lambda: pd.cut(np.ones(3), bins=[3, 1]))
    yield plain_case(c, "rolling-window", lambda: frame(2).rolling(window=-1))
    yield plain_case(c, "to-numeric", lambda: pd.to_numeric(pd.Series(["a"])))
    yield shape_case(
        c,
        "columns-passed",
        lambda: pd.DataFrame([[1, 2], [3, 4]], columns=["a", "b", "c"]),
        (3,),
        (2,),
    )
    yield shape_case(
        c, "series-3d", lambda: pd.Series(np.ones((2, 2, 2))), (2, 2, 2), operation="ndim"
    )
    yield shape_case(c, "frame-3d", lambda: pd.DataFrame(np.ones((2, 2, 2))), (2, 2, 2))
    yield shape_case(
        c,
        "series-plus-array",
        lambda: pd.Series([1.0, 2.0]) + np.ones(3),
        (2,),
        (3,),
        operation="broadcast",
    )
    yield shape_case(c, "frame-plus-array", lambda: frame(2) + np.ones((3, 1)), (2, 1), (3, 1))


def sklearn_more_cases() -> Iterator[Case]:
    try:
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LinearRegression
        from sklearn.metrics import accuracy_score, confusion_matrix, mean_squared_error, r2_score
        from sklearn.model_selection import cross_val_score, train_test_split
        from sklearn.naive_bayes import GaussianNB
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
        from sklearn.svm import SVC
        from sklearn.tree import DecisionTreeRegressor
    except ImportError:
        return
    c = "sklearn"
    ones = np.ones
    labels = [0, 1, 0, 1, 0]

    def features(name: str, fn: object, got: int, expected: int) -> Case:
        return _case(
            c,
            name,
            fn,
            ShapeError,
            shapes=((got,), (expected,)),  # type: ignore[arg-type]
            operation="features",
            dimension=1,
        )

    def samples(name: str, fn: object, *counts: int) -> Case:
        shapes = tuple((n,) for n in counts)
        return _case(c, name, fn, ShapeError, shapes=shapes, operation="length", dimension=0)  # type: ignore[arg-type]

    knn = KNeighborsClassifier(n_neighbors=1).fit(ones((5, 3)), labels)
    yield features("knn-predict", lambda: knn.predict(ones((2, 4))), 4, 3)
    pca = PCA(1).fit(np.arange(15.0).reshape(5, 3))
    yield features("pca-transform", lambda: pca.transform(ones((2, 4))), 4, 3)
    encoder = OneHotEncoder().fit([["a"]])
    yield features("one-hot-transform", lambda: encoder.transform([["a", "b"]]), 2, 1)
    imputer = SimpleImputer().fit(ones((3, 2)))
    yield features("imputer-transform", lambda: imputer.transform(ones((2, 3))), 3, 2)
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(ones((5, 3)), labels)
    yield features("pipeline-predict", lambda: pipe.predict(ones((2, 5))), 5, 3)
    yield samples("tree-fit", lambda: DecisionTreeRegressor().fit(ones((5, 2)), ones(4)), 5, 4)
    yield samples("forest-fit", lambda: RandomForestClassifier().fit(ones((3, 2)), [0, 1]), 3, 2)
    yield samples("split-arrays", lambda: train_test_split(ones(3), ones(4)), 3, 4)
    yield samples("accuracy", lambda: accuracy_score([0, 1], [0, 1, 1]), 2, 3)
    yield samples("mse", lambda: mean_squared_error(ones(3), ones(4)), 3, 4)
    # y_true, y_pred and the default sample_weight (one per y_true)
    yield samples("confusion-matrix", lambda: confusion_matrix([0, 1], [0]), 2, 1, 2)
    yield shape_case(c, "r2-outputs", lambda: r2_score(ones((3, 2)), ones((3, 3))), (2,), (3,))
    yield _case(c, "svc-1d", lambda: SVC().fit(ones(4), [0, 1, 0, 1]), ShapeError, shapes=())
    yield _case(
        c, "scaler-3d", lambda: StandardScaler().fit(ones((2, 2, 2))), ShapeError, shapes=()
    )
    yield shape_case(
        c,
        "nb-2d-y",
        lambda: GaussianNB().fit(ones((4, 2)), ones((4, 2))),
        (4, 2),
        operation="ndim",
    )
    yield plain_case(c, "pca-components", lambda: PCA(n_components=5).fit(ones((3, 2))))
    yield plain_case(c, "kmeans-zero-clusters", lambda: KMeans(n_clusters=0).fit(ones((3, 2))))
    yield plain_case(c, "infinity", lambda: LinearRegression().fit(np.array([[np.inf]]), [1]))
    # the value "a" cannot be parsed as a float: a bad value, like numpy's astype-str
    yield plain_case(c, "scaler-strings", lambda: StandardScaler().fit(np.array([["a", "b"]])))
    yield plain_case(
        c, "cv-splits", lambda: cross_val_score(LinearRegression(), ones((3, 2)), ones(3), cv=5)
    )
    label_encoder = LabelEncoder().fit([1, 2])
    yield plain_case(c, "unseen-labels", lambda: label_encoder.transform([3]))


def pyarrow_more_cases() -> Iterator[Case]:
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return
    c = "pyarrow"

    def no_shapes(name: str, fn: object) -> Case:
        return _case(c, name, fn, ShapeError, shapes=())  # type: ignore[arg-type]

    yield no_shapes("add-lengths", lambda: pc.add(pa.array([1, 2]), pa.array([1, 2, 3])))
    yield no_shapes(
        "if-else-lengths",
        lambda: pc.if_else(pa.array([True]), pa.array([1, 2]), pa.array([1, 2])),
    )
    yield shape_case(
        c,
        "names-length",
        lambda: pa.Table.from_arrays([pa.array([1])], names=["a", "b"]),
        (2,),
        (1,),
    )
    one_row = pa.table({"a": [1]})
    yield shape_case(
        c,
        "append-column",
        lambda: one_row.append_column("b", pa.array([1, 2])),
        (1,),
        (2,),
        operation="length",
    )
    yield no_shapes(
        "fixed-size-list-values",
        lambda: pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3]), 2),
    )
    yield shape_case(
        c,
        "fixed-size-list-item",
        lambda: pa.array([[1], [1, 2]], type=pa.list_(pa.int64(), 1)),
        (1,),
        (2,),
    )
    yield plain_case(c, "parse-int", lambda: pa.array(["a"]).cast(pa.int64()))
    yield dtype_case(c, "sum-strings", lambda: pc.sum(pa.array(["a"])), None, "string")
    yield dtype_case(
        c, "multiply-bool", lambda: pc.multiply(pa.array([1]), pa.array([True])), "int64", "bool"
    )
    yield dtype_case(
        c, "equal-string", lambda: pc.equal(pa.array([1]), pa.array(["a"])), "int64", "string"
    )
    yield dtype_case(
        c,
        "from-pandas-mixed",
        lambda: pa.Table.from_pandas(pd.DataFrame({"a": ["x", 1]}, dtype=object)),
        "bytes",
        "int",
    )
    yield dtype_case(
        c, "array-int-as-string", lambda: pa.array([1, 2], type=pa.string()), "bytes", "int"
    )
    yield dtype_case(
        c, "array-str-as-int", lambda: pa.array(["a"], type=pa.int64()), "int64", "str"
    )
    yield plain_case(c, "select-missing", lambda: one_row.select(["zzz"]))
    batches = [
        pa.record_batch({"a": pa.array([1])}),
        pa.record_batch({"a": pa.array(["x"])}),
    ]
    yield dtype_case(
        c, "from-batches-schema", lambda: pa.Table.from_batches(batches), "int64", "string"
    )
    yield plain_case(c, "empty-chunked", lambda: pa.chunked_array([]))
    yield plain_case(c, "ipc-garbage", lambda: pa.ipc.open_stream(b"not arrow"))
    yield dtype_case(
        c,
        "cast-string-to-list",
        lambda: pc.cast(pa.array(["x"]), pa.list_(pa.int64())),
        "list",
        "string",
    )
    yield dtype_case(
        c,
        "cast-int-to-struct",
        lambda: pa.array([1]).cast(pa.struct([("a", pa.int64())])),
        "struct",
        "int64",
    )
