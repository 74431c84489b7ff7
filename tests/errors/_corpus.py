"""A corpus of real error messages, produced by raising them at test time.

Each library section calls NumPy, PyTorch (CPU), pandas, scikit-learn or
PyArrow the wrong way and captures what it raises, so the corpus follows the
installed versions; expectations are stated from the inputs (the shapes and
dtypes fed in), never copied from a message.

Errors that need a GPU cannot be raised here. For those, the ``gpu_cases``
section rebuilds the messages from the format strings in the libraries'
public sources, cited next to each, and raises them from stand-in classes
with the real module and type names.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from snakepit.errors import (
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    OutOfMemoryError,
    PythonError,
    ShapeError,
    SnakepitError,
)

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

# What the injected memory probe "measures" on the GPU (see fake_probe).
PROBE_FREE = 3 * GIB + 512 * MIB
PROBE_TOTAL = 80 * GIB
PROBE_USED = PROBE_TOTAL - PROBE_FREE

Shape = tuple[int, ...]


def fake_probe(device: str) -> Mapping[str, int]:
    """Stands in for NVML, so OOM records get device figures without a GPU."""
    return {"free": PROBE_FREE, "total": PROBE_TOTAL, "used": PROBE_USED}


@dataclass(frozen=True)
class Case:
    """One real error and what the classifier must make of it.

    ``shapes`` is every shape :class:`ShapeError` must report (``()`` when the
    message names none; ``None`` for other kinds), ``pair`` its
    ``(shape_a, shape_b)`` when that is not ``shapes[:2]``. ``dtypes`` is
    ``(expected, got)``; ``devices``/``device`` and the memory figures
    likewise. ``None`` means "not applicable", except for OOM figures where
    ``None`` must come back as ``None``.
    """

    library: str
    name: str
    error: BaseException
    kind: type[SnakepitError]
    shapes: tuple[Shape, ...] | None = None
    pair: tuple[Shape | None, Shape | None] | None = None
    operation: str | None = None
    dimension: int | None = None
    dtypes: tuple[str | None, str | None] | None = None
    devices: tuple[str, ...] | None = None
    device: str | None = None
    requested: int | None = None
    available: int | None = None
    total: int | None = None
    framework: str | None = None
    source: str | None = None
    unordered: bool = False

    @property
    def id(self) -> str:
        return f"{self.library}-{self.name}"


def capture(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (library warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn()
        except BaseException as exc:  # the whole point is to keep it
            return exc
    raise AssertionError(f"{fn!r} raised nothing")


def _case(
    library: str, name: str, fn: Callable[[], object], kind: type[SnakepitError], **kw: Any
) -> Case:
    return Case(library, name, capture(fn), kind, **kw)


# ====================================================================== numpy


def numpy_cases() -> Iterator[Case]:
    try:
        import numpy as np
    except ImportError:
        return
    c = "numpy"
    a, b = np.ones((3, 4)), np.ones((2, 2))
    yield _case(
        c, "matmul", lambda: a @ b, ShapeError, shapes=((4,), (2,)), operation="matmul", dimension=0
    )
    a3, b3 = np.ones((5, 3, 4)), np.ones((5, 6, 2))
    yield _case(
        c, "matmul-batched", lambda: a3 @ b3, ShapeError, shapes=((4,), (6,)), operation="matmul"
    )
    yield _case(
        c, "dot", lambda: np.dot(a, b), ShapeError, shapes=(a.shape, b.shape), operation="matmul"
    )
    bt = np.ones((5, 4))
    yield _case(
        c,
        "dot-transposable",
        lambda: np.dot(a, bt),
        ShapeError,
        shapes=(a.shape, bt.shape),
        operation="matmul",
    )
    yield _case(
        c,
        "broadcast-2",
        lambda: a + b,
        ShapeError,
        shapes=(a.shape, b.shape),
        operation="broadcast",
    )
    cond, x, y = np.ones((3, 4)) > 0, np.ones(2), np.ones(5)
    yield _case(
        c,
        "broadcast-3",
        lambda: np.where(cond, x, y),
        ShapeError,
        shapes=(cond.shape, x.shape, y.shape),
        pair=(cond.shape, x.shape),
        operation="broadcast",
    )
    late = np.ones(4)
    yield _case(
        c,
        "broadcast-3-late-conflict",
        lambda: np.where(cond, late, y),
        ShapeError,
        shapes=(cond.shape, late.shape, y.shape),
        pair=(cond.shape, y.shape),
        operation="broadcast",
    )
    p, q, r = np.ones((3, 4)), np.ones((3, 4)), np.ones((2, 2))
    yield _case(
        c,
        "broadcast-object-3",
        lambda: np.broadcast(p, q, r),
        ShapeError,
        shapes=(p.shape, r.shape),
        operation="broadcast",
    )
    u, v, w = np.ones(4), np.ones((3, 1)), np.ones(5)
    yield _case(
        c,
        "broadcast-arrays-3",
        lambda: np.broadcast_arrays(u, v, w),
        ShapeError,
        shapes=(u.shape, w.shape),
        operation="broadcast",
    )
    yield _case(
        c,
        "setitem-broadcast",
        lambda: a.copy().__setitem__(slice(None), b),
        ShapeError,
        shapes=(b.shape, a.shape),
        operation="broadcast",
    )
    yield _case(
        c,
        "einsum",
        lambda: np.einsum("ij,jk->ik", a, b),
        ShapeError,
        shapes=(a.shape, b.shape),
        operation="broadcast",
    )
    yield _case(
        c,
        "reshape",
        lambda: np.arange(10).reshape(2, 3),
        ShapeError,
        shapes=((10,), (2, 3)),
        operation="reshape",
    )
    yield _case(
        c,
        "reshape-inferred",
        lambda: np.arange(10).reshape(3, -1),
        ShapeError,
        shapes=((10,), (3, -1)),
        operation="reshape",
    )
    left, right = np.ones((3, 4)), np.ones((3, 5))
    yield _case(
        c,
        "concatenate",
        lambda: np.concatenate([left, right]),
        ShapeError,
        shapes=((4,), (5,)),
        operation="concatenate",
        dimension=1,
    )
    top = np.ones((2, 5))
    yield _case(
        c,
        "hstack",
        lambda: np.hstack([left, top]),
        ShapeError,
        shapes=((3,), (2,)),
        operation="concatenate",
        dimension=0,
    )
    yield _case(
        c,
        "vstack",
        lambda: np.vstack([left, right]),
        ShapeError,
        shapes=((4,), (5,)),
        operation="concatenate",
        dimension=1,
    )
    yield _case(
        c, "stack", lambda: np.stack([left, right]), ShapeError, shapes=(), operation="stack"
    )
    sq, vec = np.ones((3, 3)), np.ones(4)
    yield _case(c, "solve", lambda: np.linalg.solve(sq, vec), ShapeError, shapes=((3,), (4,)))
    yield _case(
        c,
        "inv-not-square",
        lambda: np.linalg.inv(np.ones((3, 4))),
        ShapeError,
        shapes=(),
        operation="linalg",
    )
    yield _case(
        c,
        "matmul-scalar",
        lambda: np.matmul(np.ones(3), 2.0),
        ShapeError,
        shapes=(),
        operation="ndim",
    )
    ints = np.zeros(3, dtype=np.int64)
    yield _case(
        c,
        "ufunc-out-cast",
        lambda: np.add(np.ones(3), 1.5, out=ints),
        DtypeError,
        dtypes=("int64", "float64"),
        operation="add",
    )

    def iadd() -> None:
        target = np.zeros(3, dtype=np.int32)
        target += np.ones(3)

    yield _case(c, "inplace-cast", iadd, DtypeError, dtypes=("int32", "float64"), operation="add")
    f32 = np.ones(3, np.float32)
    yield _case(
        c,
        "ufunc-complex-cast",
        lambda: np.multiply(f32, 2.5j, out=f32),
        DtypeError,
        dtypes=("float32", "complex64"),
        operation="multiply",
    )
    yield _case(
        c,
        "astype-safe",
        lambda: np.arange(3).astype(np.int8, casting="safe"),
        DtypeError,
        dtypes=("int8", "int64"),
        operation="cast",
    )
    yield _case(
        c,
        "copyto",
        lambda: np.copyto(np.zeros(3, dtype=np.int64), np.ones(3)),
        DtypeError,
        dtypes=("int64", "float64"),
        operation="cast",
    )
    words = np.array(["a", "b", "c"])
    yield _case(
        c,
        "no-loop",
        lambda: np.arange(3) + words,
        DtypeError,
        dtypes=("int64", "str"),
        operation="add",
    )
    yield _case(
        c,
        "unsupported-ufunc",
        lambda: np.bitwise_and(np.ones(3), 1),
        DtypeError,
        dtypes=(None, None),
        operation="bitwise_and",
    )
    yield _case(
        c,
        "sqrt-of-strings",
        lambda: np.sqrt(words),
        DtypeError,
        dtypes=(None, None),
        operation="sqrt",
    )
    yield _case(
        c,
        "unknown-dtype",
        lambda: np.zeros(3, dtype="float99"),
        DtypeError,
        dtypes=(None, "float99"),
    )
    yield _case(c, "index", lambda: np.ones(3)[5], PythonError)
    yield _case(c, "axis", lambda: np.ones(3).sum(axis=2), PythonError)
    yield _case(c, "bool-index", lambda: np.arange(3)[np.array([True, False])], PythonError)
    yield _case(c, "too-many-indices", lambda: np.zeros((2, 2))[0, 0, 0], PythonError)
    yield _case(c, "astype-str", lambda: np.array(["x"]).astype(float), PythonError)
    yield _case(c, "nan-to-int", lambda: int(np.float64("nan")), PythonError)
    n = 1 << 50
    yield _case(
        c,
        "oom",
        lambda: np.empty(n),
        OutOfMemoryError,
        device="cpu",
        requested=8 * n,
        framework="numpy",
    )


# ====================================================================== torch


def torch_cases() -> Iterator[Case]:
    try:
        import torch
    except ImportError:
        return
    c = "torch"
    a, b = torch.randn(3, 4), torch.randn(2, 2)
    yield _case(c, "mm", lambda: a @ b, ShapeError, shapes=((3, 4), (2, 2)), operation="matmul")
    p, q = torch.randn(8, 16), torch.randn(32, 16)
    yield _case(
        c,
        "mm-transposable",
        lambda: p @ q,
        ShapeError,
        shapes=((8, 16), (32, 16)),
        operation="matmul",
    )
    layer = torch.nn.Linear(4, 2)
    wide = torch.randn(3, 5)
    yield _case(
        c, "linear", lambda: layer(wide), ShapeError, shapes=((3, 5), (4, 2)), operation="matmul"
    )
    vec = torch.randn(2)
    yield _case(c, "mv", lambda: a @ vec, ShapeError, shapes=((3, 4), (2,)), operation="mv")
    x3, y3 = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    yield _case(
        c, "bmm", lambda: torch.bmm(x3, y3), ShapeError, shapes=((2, 4), (2, 5)), operation="bmm"
    )
    yield _case(
        c,
        "matmul-batched",
        lambda: torch.matmul(x3, y3),
        ShapeError,
        shapes=((2, 4), (2, 5)),
        operation="bmm",
    )
    yield _case(
        c,
        "dot",
        lambda: torch.dot(torch.randn(3), torch.randn(4)),
        ShapeError,
        shapes=((3,), (4,)),
        operation="dot",
    )
    yield _case(
        c,
        "broadcast",
        lambda: torch.randn(3, 4) + torch.randn(3, 5),
        ShapeError,
        shapes=((4,), (5,)),
        operation="broadcast",
        dimension=1,
    )
    cond, m, n = torch.randn(3, 4) > 0, torch.randn(2, 4), torch.randn(5, 4)
    yield _case(
        c,
        "where-3",
        lambda: torch.where(cond, m, n),
        ShapeError,
        shapes=((3,), (2,)),
        operation="broadcast",
        dimension=0,
    )
    yield _case(
        c,
        "broadcast-tensors-3",
        lambda: torch.broadcast_tensors(cond, m, n),
        ShapeError,
        shapes=((3,), (2,)),
        operation="broadcast",
        dimension=0,
    )
    yield _case(
        c,
        "mse-loss",
        lambda: torch.nn.functional.mse_loss(torch.randn(3, 4), torch.randn(3, 5)),
        ShapeError,
        shapes=((4,), (5,)),
        operation="broadcast",
        dimension=1,
    )
    logits, target = torch.randn(3, 4), torch.randn(3, 1)
    yield _case(
        c,
        "bce-target-size",
        lambda: torch.nn.functional.binary_cross_entropy_with_logits(logits, target),
        ShapeError,
        shapes=((3, 1), (3, 4)),
    )
    t12 = torch.randn(3, 4)
    yield _case(
        c, "view", lambda: t12.view(5, 3), ShapeError, shapes=((12,), (5, 3)), operation="reshape"
    )
    yield _case(
        c,
        "reshape-inferred",
        lambda: torch.randn(2, 3, 4).reshape(5, -1),
        ShapeError,
        shapes=((24,), (5, -1)),
        operation="reshape",
    )
    yield _case(
        c, "view-non-contiguous", lambda: t12.t().view(12), ShapeError, shapes=(), operation="view"
    )
    yield _case(
        c,
        "unflatten",
        lambda: torch.randn(12).unflatten(0, (5, 3)),
        ShapeError,
        shapes=((12,), (5, 3)),
        operation="reshape",
    )
    yield _case(
        c,
        "cat",
        lambda: torch.cat([torch.randn(3, 4), torch.randn(3, 5)]),
        ShapeError,
        shapes=((4,), (5,)),
        operation="concatenate",
    )
    yield _case(
        c,
        "cat-ndim",
        lambda: torch.cat([torch.randn(3, 4), torch.randn(3)]),
        ShapeError,
        shapes=(),
        operation="ndim",
    )
    yield _case(
        c,
        "stack",
        lambda: torch.stack([torch.randn(3, 4), torch.randn(3, 5)]),
        ShapeError,
        shapes=((3, 4), (3, 5)),
        operation="stack",
    )
    yield _case(
        c,
        "expand",
        lambda: torch.randn(3, 4).expand(2, 5),
        ShapeError,
        shapes=((2, 5), (3, 4)),
        operation="expand",
        dimension=1,
    )
    conv = torch.nn.Conv2d(3, 8, 3)
    image = torch.randn(1, 4, 10, 10)
    yield _case(
        c,
        "conv-channels",
        lambda: conv(image),
        ShapeError,
        shapes=(tuple(conv.weight.shape), tuple(image.shape)),
        operation="conv",
        dimension=1,
    )
    norm = torch.nn.LayerNorm(4)
    yield _case(
        c,
        "layer-norm",
        lambda: norm(torch.randn(3, 5)),
        ShapeError,
        shapes=((4,), (3, 5)),
        operation="normalize",
    )
    batch_norm = torch.nn.BatchNorm1d(4)
    yield _case(
        c,
        "batch-norm",
        lambda: batch_norm(torch.randn(3, 5)),
        ShapeError,
        shapes=((5,), (4,)),
        operation="normalize",
    )
    lstm = torch.nn.LSTM(4, 8)
    yield _case(
        c,
        "lstm-input-size",
        lambda: lstm(torch.randn(5, 2, 3)),
        ShapeError,
        shapes=((3,), (4,)),
        operation="features",
    )
    yield _case(c, "index", lambda: torch.randn(3)[5], PythonError)
    yield _case(
        c, "embedding-index", lambda: torch.nn.Embedding(3, 2)(torch.tensor([5])), PythonError
    )
    yield _case(c, "dim-out-of-range", lambda: torch.randn(3).sum(dim=2), PythonError)
    doubles = torch.randn(3, 4, dtype=torch.float64)
    yield _case(
        c,
        "linear-dtype",
        lambda: layer(torch.randn(3, 4, dtype=torch.float64)),
        DtypeError,
        dtypes=("float64", "float32"),
    )
    yield _case(
        c,
        "mm-dtype",
        lambda: torch.randn(3, 4) @ doubles.T,
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "mm-long-float",
        lambda: torch.ones(2, 2).long() @ torch.ones(2, 2),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    conv1 = torch.nn.Conv1d(1, 1, 1)
    yield _case(
        c,
        "conv-double",
        lambda: conv1(torch.ones(1, 1, 3, dtype=torch.float64)),
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "conv-long",
        lambda: conv1(torch.ones(1, 1, 3).long()),
        DtypeError,
        dtypes=("float32", "int64"),
    )
    yield _case(
        c,
        "nll-target",
        lambda: torch.nn.functional.nll_loss(torch.randn(3, 4), torch.tensor([1.0, 2.0, 3.0])),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c,
        "inplace-result-type",
        lambda: torch.zeros(3, dtype=torch.long).add_(torch.randn(3)),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c,
        "dot-dtype",
        lambda: torch.dot(torch.ones(3).long(), torch.ones(3)),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    yield _case(
        c, "mean-of-ints", lambda: torch.ones(3).long().mean(), DtypeError, dtypes=(None, "int64")
    )
    yield _case(
        c,
        "index-dtype",
        lambda: torch.ones(3).index_select(0, torch.tensor([0.5])),
        DtypeError,
        dtypes=("int64", None),
        operation="index",
    )
    yield _case(
        c,
        "embedding-dtype",
        lambda: torch.nn.Embedding(3, 2)(torch.tensor([0.5])),
        DtypeError,
        dtypes=("int64", "float32"),
    )
    mask = torch.tensor([1, 0, 1])
    yield _case(
        c,
        "masked-fill",
        lambda: torch.zeros(3).masked_fill(mask, 0),
        DtypeError,
        dtypes=("bool", "int64"),
    )
    yield _case(
        c,
        "lerp",
        lambda: torch.lerp(torch.ones(2), torch.ones(2).double(), 0.5),
        DtypeError,
        dtypes=("float32", "float64"),
    )
    yield _case(
        c,
        "addmm-half",
        lambda: torch.ones(2).addmm(torch.ones(2, 2).half(), torch.ones(2, 2)),
        DtypeError,
        dtypes=("float16", "float32"),
    )
    meta_layer = torch.nn.Linear(2, 2, device="meta")
    yield _case(
        c,
        "meta-vs-cpu",
        lambda: meta_layer(torch.ones(1, 2)),
        DeviceMismatchError,
        devices=("meta", "cpu"),
    )
    on_meta = torch.ones(2, 2, device="meta")
    yield _case(
        c,
        "cpu-vs-meta",
        lambda: on_meta * torch.ones(2, 2),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    yield _case(
        c,
        "cat-devices",
        lambda: torch.cat([torch.ones(2, device="meta"), torch.ones(2)]),
        DeviceMismatchError,
        devices=("cpu", "meta"),
    )
    if not torch.backends.cuda.is_built():
        yield _case(
            c,
            "cuda-not-built",
            lambda: torch.zeros(1, device="cuda"),
            DeviceNotAvailableError,
            device="cuda",
        )
    size = 1 << 60
    yield _case(
        c,
        "cpu-oom",
        lambda: torch.empty(size, dtype=torch.uint8),
        OutOfMemoryError,
        device="cpu",
        requested=size,
        framework="torch",
    )


# ===================================================================== pandas


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


# =============================================================== scikit-learn


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


# ==================================================================== pyarrow


def pyarrow_cases() -> Iterator[Case]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return
    c = "pyarrow"
    yield _case(
        c,
        "table-lengths",
        lambda: pa.table({"a": [1, 2, 3], "b": [1, 2]}),
        ShapeError,
        shapes=((3,), (2,)),
        operation="length",
    )
    arrays = [pa.array([1, 2]), pa.array([1])]
    yield _case(
        c,
        "table-from-arrays",
        lambda: pa.Table.from_arrays(arrays, names=["a", "b"]),
        ShapeError,
        shapes=((2,), (1,)),
        operation="length",
    )
    yield _case(
        c,
        "record-batch-lengths",
        lambda: pa.RecordBatch.from_arrays(arrays, names=["a", "b"]),
        ShapeError,
        shapes=((2,), (1,)),
        operation="length",
        unordered=True,
    )
    yield _case(
        c,
        "struct-lengths",
        lambda: pa.StructArray.from_arrays(arrays, names=["a", "b"]),
        ShapeError,
        shapes=(),
        operation="length",
    )
    yield _case(c, "mixed-values", lambda: pa.array([1, "a"]), DtypeError, dtypes=("int64", "str"))
    yield _case(
        c,
        "unsupported-cast",
        lambda: pa.array([1]).cast(pa.list_(pa.int64())),
        DtypeError,
        dtypes=("list", "int64"),
    )
    yield _case(
        c,
        "no-kernel",
        lambda: pc.add(pa.array([1]), pa.array(["a"])),
        DtypeError,
        dtypes=("int64", "string"),
        operation="add",
    )
    yield _case(
        c,
        "concat-types",
        lambda: pa.concat_arrays([pa.array([1]), pa.array(["a"])]),
        DtypeError,
        dtypes=("int64", "string"),
    )
    yield _case(
        c,
        "chunk-types",
        lambda: pa.chunked_array([pa.array([1]), pa.array(["a"])]),
        DtypeError,
        dtypes=(None, None),
    )
    schema = pa.schema([("a", pa.string())])
    yield _case(
        c,
        "schema-type",
        lambda: pa.table({"a": [1]}, schema=schema),
        DtypeError,
        dtypes=("bytes", "int"),
    )
    yield _case(c, "truncating-cast", lambda: pa.array([1.5]).cast(pa.int64()), PythonError)
    yield _case(c, "out-of-range-cast", lambda: pa.array([300]).cast(pa.int8()), PythonError)
    yield _case(c, "int-overflow", lambda: pa.array([2**70]), PythonError)
    yield _case(c, "missing-column", lambda: pa.table({"a": [1]}).column("b"), PythonError)
    yield _case(c, "missing-field", lambda: pa.schema([("a", pa.int64())]).field("b"), PythonError)
    yield _case(c, "index", lambda: pa.array([1])[5], PythonError)
    yield _case(c, "take", lambda: pc.take(pa.array([1, 2]), pa.array([5])), PythonError)
    yield _case(
        c,
        "schemas-differ",
        lambda: pa.concat_tables([pa.table({"a": [1]}), pa.table({"b": [1]})]),
        PythonError,
    )
    size = 1 << 62
    yield _case(
        c,
        "oom",
        lambda: pa.allocate_buffer(size),
        OutOfMemoryError,
        device="cpu",
        requested=size,
        framework="pyarrow",
    )


# ======================================================= GPU-only, from source


def _format_size(size: int) -> str:
    """c10's ``format_size`` (c10/cuda/CUDACachingAllocator.cpp), used by torch OOM messages."""
    if size <= 1024:
        return f"{size} bytes"
    if size <= 1048576:
        return f"{size / 1024.0:.2f} KiB"
    if size <= 1073741824:
        return f"{size / 1048576.0:.2f} MiB"
    return f"{size / 1073741824.0:.2f} GiB"


def _denoted(text: str) -> int:
    """The byte count a formatted size stands for ("2.00 GiB" -> 2147483648)."""
    number, unit = text.split()
    factor = {"bytes": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB}[unit]
    return round(float(number) * factor)


def _throw(exc: BaseException) -> None:
    raise exc


def _raised(module: str, name: str, base: type[BaseException], message: str) -> BaseException:
    """A raised instance of a stand-in for ``module.name`` (real type names, no import)."""
    if module == "builtins":
        return capture(lambda: _throw(base(message)))
    cls = type(name, (base,), {"__module__": module, "__qualname__": name})
    return capture(lambda: _throw(cls(message)))


def _cupy_message(size: int, total: int, limit: int = 0) -> str:
    # cupy/cupy cupy/cuda/memory.pyx, class OutOfMemoryError.__init__
    if limit == 0:
        msg = f"Out of memory allocating {size:,} bytes"
        if total != -1:
            msg += f" (allocated so far: {total:,} bytes)."
        return msg
    return (
        f"Out of memory allocating {size:,} bytes "
        f"(allocated so far: {total:,} bytes, limit set to: {limit:,} bytes)."
    )


def gpu_cases() -> Iterator[Case]:
    c = "gpu-source"
    # pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator::malloc
    # (torch >= 2.2): TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory.
    # Tried to allocate ", format_size(alloc_size), ". GPU ", device_id, " has a total
    # capacity of ", format_size(device_total), " of which ", format_size(device_free),
    # " is free. ", proc_info, allowed_info, "Of the allocated memory ", ..., " is
    # allocated by PyTorch, ", private_pool_msg, "and ", ..., " is reserved by PyTorch
    # but unallocated.", " If reserved but unallocated memory is large try setting",
    # " PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See
    # documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
    want, total, free = 2 * GIB, 85_000_000_000, 1_320_000_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)}. GPU 0 has a total "
        f"capacity of {_format_size(total)} of which {_format_size(free)} is free. Including "
        f"non-PyTorch memory, this process has {_format_size(total - free)} memory in use. Of the "
        f"allocated memory {_format_size(70 * GIB)} is allocated by PyTorch, and "
        f"{_format_size(7 * GIB)} is reserved by PyTorch but unallocated. If reserved but "
        "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
        "to avoid fragmentation.  See documentation for Memory Management  "
        "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )
    yield Case(
        c,
        "torch-cuda-oom",
        _raised("torch", "OutOfMemoryError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:0",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp",
    )
    # Same function in torch 2.1, raised as torch.cuda.OutOfMemoryError, which spelt
    # " has a total capacty of " and ended "... try setting max_split_size_mb to avoid
    # fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF".
    want, total, free = 20 * MIB, 24 * GIB, 5_960_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)}. GPU 1 has a total "
        f"capacty of {_format_size(total)} of which {_format_size(free)} is free. Process 4242 "
        f"has {_format_size(GIB)} memory in use. Including non-PyTorch memory, this process has "
        f"{_format_size(22 * GIB)} memory in use. Of the allocated memory {_format_size(21 * GIB)} "
        f"is allocated by PyTorch, and {_format_size(300 * MIB)} is reserved by PyTorch but "
        "unallocated. If reserved but unallocated memory is large try setting max_split_size_mb "
        "to avoid fragmentation.  See documentation for Memory Management and "
        "PYTORCH_CUDA_ALLOC_CONF"
    )
    yield Case(
        c,
        "torch-cuda-oom-2.1",
        _raised("torch.cuda", "OutOfMemoryError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:1",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp (v2.1)",
    )
    # torch < 2.1 (same file): "CUDA out of memory. Tried to allocate ", format_size(alloc_size),
    # " (GPU ", device, "; ", format_size(device_total), " total capacity; ",
    # format_size(allocated), " already allocated; ", format_size(device_free), " free; ",
    # allowed_info, format_size(reserved), " reserved in total by PyTorch)", " If reserved
    # memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.
    # See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF"
    want, total, free = 36 * MIB, 8_514_000_000, 49_350_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)} (GPU 0; "
        f"{_format_size(total)} total capacity; {_format_size(136_700_000)} already allocated; "
        f"{_format_size(free)} free; {_format_size(4 * GIB)} allowed; {_format_size(188 * MIB)} "
        "reserved in total by PyTorch) If reserved memory is >> allocated memory try setting "
        "max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and "
        "PYTORCH_CUDA_ALLOC_CONF"
    )
    yield Case(
        c,
        "torch-cuda-oom-legacy",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:0",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp (< 2.1)",
    )
    # openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc,
    # TfAllocatorAdapter::Allocate: absl::ResourceExhaustedError(absl::StrCat("Out of
    # memory while trying to allocate ", size, " bytes.")); JAX prefixes the status code.
    size = 17_179_869_184
    message = f"RESOURCE_EXHAUSTED: Out of memory while trying to allocate {size} bytes."
    yield Case(
        c,
        "xla-resource-exhausted",
        _raised("jaxlib.xla_extension", "XlaRuntimeError", RuntimeError, message),
        OutOfMemoryError,
        device="gpu",
        requested=size,
        available=PROBE_FREE,
        total=PROBE_TOTAL,
        framework="jax",
        source="openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc",
    )
    # cupy/cupy cupy/cuda/memory.pyx, class OutOfMemoryError(MemoryError)
    yield Case(
        c,
        "cupy-oom",
        _raised("cupy.cuda.memory", "OutOfMemoryError", MemoryError, _cupy_message(1024, 0)),
        OutOfMemoryError,
        device="cuda",
        requested=1024,
        available=PROBE_FREE,
        total=PROBE_TOTAL,
        framework="cupy",
        source="cupy/cupy cupy/cuda/memory.pyx",
    )
    message = _cupy_message(3 * GIB, 6 * GIB, limit=8 * GIB)
    yield Case(
        c,
        "cupy-oom-limit",
        _raised("cupy.cuda.memory", "OutOfMemoryError", MemoryError, message),
        OutOfMemoryError,
        device="cuda",
        requested=3 * GIB,
        available=PROBE_FREE,
        total=8 * GIB,
        framework="cupy",
        source="cupy/cupy cupy/cuda/memory.pyx",
    )
    # pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp,
    # c10::impl::common_device_check_failure (torch < 2.6): "Expected all tensors to be
    # on the same device, but found at least two devices, ", common_device, " and ",
    # tensor.device(), "! (when checking argument for argument ", argName, " in method ",
    # methodName, ")"
    message = (
        "Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:0 and cpu! (when checking argument for argument mat2 in method wrapper_CUDA_mm)"
    )
    yield Case(
        c,
        "torch-device-mismatch",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cuda:0", "cpu"),
        device="cuda:0",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp",
    )
    message = (
        "Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0! (when checking argument for argument target in method "
        "wrapper_CUDA_nll_loss_forward)"
    )
    yield Case(
        c,
        "torch-device-mismatch-gpus",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cuda:1", "cuda:0"),
        device="cuda:1",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp",
    )
    # Same function, torch >= 2.6: "Expected all tensors to be on the same device, but
    # got ", argName, " is on ", tensor.device(), ", different from other tensors on ",
    # common_device, " (when checking argument in method ", methodName, ")"
    message = (
        "Expected all tensors to be on the same device, but got mat2 is on cpu, different "
        "from other tensors on cuda:0 (when checking argument in method wrapper_CUDA_mm)"
    )
    yield Case(
        c,
        "torch-device-mismatch-2.6",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cpu", "cuda:0"),
        device="cuda:0",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp (>= 2.6)",
    )


# ===================================================================== corpus

LIBRARIES = ("numpy", "torch", "pandas", "sklearn", "pyarrow")


def build() -> list[Case]:
    """Every case, real ones first (libraries that are not installed contribute none)."""
    cases: list[Case] = []
    for section in (
        numpy_cases,
        torch_cases,
        pandas_cases,
        sklearn_cases,
        pyarrow_cases,
        gpu_cases,
    ):
        cases.extend(section())
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, duplicates
    return cases
