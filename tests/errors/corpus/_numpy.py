"""NumPy, raised at test time."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import (
    DtypeError,
    OutOfMemoryError,
    PythonError,
    ShapeError,
)

from ._case import (
    Case,
    _case,
)


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
    # A mask of 2 for an axis of 3: a shape clash, whatever IndexError numpy raises it as
    yield _case(
        c,
        "bool-index",
        lambda: np.arange(3)[np.array([True, False])],
        ShapeError,
        shapes=((3,), (2,)),
        dimension=0,
    )
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
