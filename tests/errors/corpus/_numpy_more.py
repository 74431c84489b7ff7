"""More NumPy, raised at test time: indexing, linalg, stacking, in-place output, casting."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import OutOfMemoryError, ShapeError

from ._case import Case, _case, dtype_case, plain_case, shape_case


def numpy_more_cases() -> Iterator[Case]:
    try:
        import numpy as np
    except ImportError:
        return
    c = "numpy"
    ones = np.ones

    def no_shapes(name: str, fn: object) -> Case:
        return _case(c, name, fn, ShapeError, shapes=())  # type: ignore[arg-type]

    yield no_shapes("concatenate-ndim", lambda: np.concatenate([ones((2, 3)), ones(3)]))
    yield shape_case(
        c,
        "concatenate-axis0",
        lambda: np.concatenate([ones((2, 3)), ones((2, 4))], axis=0),
        (3,),
        (4,),
        dimension=1,
        operation="concatenate",
    )
    yield no_shapes("stack-shapes", lambda: np.stack([ones(2), ones(3)]))
    yield shape_case(
        c,
        "column-stack",
        lambda: np.column_stack([ones(2), ones(3)]),
        (2,),
        (3,),
        dimension=0,
        operation="concatenate",
    )
    yield no_shapes("tensordot", lambda: np.tensordot(ones((3, 4)), ones((5, 6)), axes=([1], [0])))
    yield shape_case(
        c,
        "linalg-solve",
        lambda: np.linalg.solve(ones((3, 3)), ones(4)),
        (3,),
        (4,),
        dimension=0,
    )
    yield no_shapes("det-1d", lambda: np.linalg.det(ones(3)))
    yield plain_case(c, "cholesky-not-pd", lambda: np.linalg.cholesky(-np.eye(2)))
    yield no_shapes("cross-length", lambda: np.cross(ones(3), ones(4)))
    # vdot flattens b into a's shape: 4 elements into (3,)
    yield shape_case(
        c, "vdot-lengths", lambda: np.vdot(ones(3), ones(4)), (4,), (3,), operation="reshape"
    )
    yield shape_case(c, "inner", lambda: np.inner(ones(3), ones(4)), (3,), (4,), operation="matmul")
    yield shape_case(
        c,
        "dot-vector-matrix",
        lambda: np.dot(ones(3), ones((4, 2))),
        (3,),
        (4, 2),
        operation="matmul",
    )
    yield shape_case(
        c,
        "matmul-vector",
        lambda: ones((2, 3)) @ ones(2),
        (3,),
        (2,),
        operation="matmul",
        dimension=0,
    )
    yield plain_case(c, "take-range", lambda: np.take(ones(3), 5))
    yield plain_case(c, "fancy-index-range", lambda: ones(3)[[0, 7]])
    yield plain_case(c, "axis-out-of-range", lambda: ones(3).sum(axis=1))
    yield plain_case(c, "transpose-axes", lambda: ones((2, 3)).transpose(0, 2))
    yield no_shapes("split-unequal", lambda: np.split(ones(5), 2))
    yield shape_case(
        c,
        "broadcast-to",
        lambda: np.broadcast_to(ones(3), (2, 4)),
        (3,),
        (2, 4),
        operation="broadcast",
    )
    yield shape_case(
        c,
        "multiply-broadcast",
        lambda: ones((2, 3)) * ones((3, 2)),
        (2, 3),
        (3, 2),
        operation="broadcast",
    )

    def inplace_broadcast() -> None:
        target = ones(3)
        target += ones((2, 3))

    yield shape_case(c, "inplace-output-shape", inplace_broadcast, (3,), (2, 3))
    yield shape_case(
        c, "reshape-6", lambda: ones(6).reshape((4, 2)), (6,), (4, 2), operation="reshape"
    )
    yield shape_case(
        c,
        "reshape-inferred-6",
        lambda: ones((2, 3)).reshape(4, -1),
        (6,),
        (4, -1),
        operation="reshape",
    )
    yield no_shapes("interp-lengths", lambda: np.interp(ones(3), ones(2), ones(3)))
    yield no_shapes("polyfit-lengths", lambda: np.polyfit(ones(3), ones(4), 1))
    yield no_shapes("histogram-bins", lambda: np.histogram(ones(3), bins=ones((2, 2))))
    yield plain_case(c, "view-larger-dtype", lambda: ones(3).view(np.complex128))
    yield plain_case(c, "frombuffer-size", lambda: np.frombuffer(b"abc", dtype=np.int32))
    rng = np.random.default_rng(0)
    yield plain_case(c, "choice-sample", lambda: rng.choice(3, 5, replace=False))

    def iadd_int() -> None:
        counts = np.zeros(3, dtype=np.int64)
        counts += 1.5

    yield dtype_case(c, "inplace-int-float", iadd_int, "int64", "float64")
    yield dtype_case(
        c,
        "subtract-out-int32",
        lambda: np.subtract(ones(3), ones(3), out=np.zeros(3, dtype=np.int32)),
        "int32",
        "float64",
    )
    yield dtype_case(
        c,
        "astype-safe-float",
        lambda: np.array([1.5]).astype(np.int32, casting="safe"),
        "int32",
        "float64",
    )
    size = 1 << 50
    yield _case(
        c,
        "oom-int8",
        lambda: np.empty(size, dtype=np.int8),
        OutOfMemoryError,
        device="cpu",
        requested=size,
        framework="numpy",
    )
