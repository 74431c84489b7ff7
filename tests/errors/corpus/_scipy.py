"""SciPy, raised at test time: linalg, sparse, interpolate, signal, optimize, spatial, stats."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import ShapeError

from ._case import Case, _case, dtype_case, plain_case, shape_case


def scipy_cases() -> Iterator[Case]:
    try:
        import numpy as np
        import scipy.interpolate
        import scipy.linalg
        import scipy.ndimage
        import scipy.optimize
        import scipy.signal
        import scipy.sparse
        import scipy.sparse.linalg
        import scipy.spatial
        import scipy.spatial.distance
        import scipy.stats
    except ImportError:
        return
    c = "scipy"
    ones = np.ones
    sp = scipy.sparse

    def no_shapes(name: str, fn: object) -> Case:
        return _case(c, name, fn, ShapeError, shapes=())  # type: ignore[arg-type]

    # ---------------------------------------------------------------- linalg
    yield shape_case(c, "solve", lambda: scipy.linalg.solve(ones((3, 3)), ones(4)), (3, 3), (4, 1))
    yield shape_case(c, "inv-square", lambda: scipy.linalg.inv(ones((2, 3))), (2, 3))
    yield no_shapes("det-square", lambda: scipy.linalg.det(ones((2, 3))))
    yield no_shapes("expm-square", lambda: scipy.linalg.expm(ones((2, 3))))
    yield no_shapes("eigh-square", lambda: scipy.linalg.eigh(ones((2, 3))))
    yield shape_case(c, "lstsq-rows", lambda: scipy.linalg.lstsq(ones((3, 2)), ones(4)), (3,), (4,))
    yield plain_case(c, "cholesky-not-pd", lambda: scipy.linalg.cholesky(-np.eye(2)))

    # ---------------------------------------------------------------- sparse
    a, b = sp.csr_matrix(ones((3, 4))), sp.csr_matrix(ones((2, 2)))
    # the core sizes that clash: a's 4 columns against the other's rows
    yield shape_case(c, "sparse-matmul", lambda: a @ b, (4,), (2,), operation="matmul")
    yield shape_case(c, "sparse-matmul-dense", lambda: a @ ones(5), (4,), (5,), operation="matmul")
    yield no_shapes("sparse-add", lambda: a + b)
    yield no_shapes("sparse-multiply", lambda: a.multiply(ones((2, 2))))
    yield shape_case(
        c, "sparse-reshape", lambda: a.reshape(5, 2), (12,), (5, 2), operation="reshape"
    )
    yield plain_case(
        c,
        "csr-indptr",
        lambda: sp.csr_array((ones(2), np.array([0, 1]), np.array([0, 2])), shape=(2, 2)),
    )
    yield plain_case(
        c,
        "coo-index",
        lambda: sp.coo_array((ones(1), (np.array([5]), np.array([0]))), shape=(2, 2)).tocsr(),
    )
    yield shape_case(
        c,
        "hstack-rows",
        lambda: sp.hstack([sp.csr_array(ones((2, 2))), sp.csr_array(ones((3, 2)))]),
        (2,),
        (3,),
        unordered=True,
    )
    yield no_shapes(
        "vstack-columns",
        lambda: sp.vstack([sp.csr_array(ones((2, 2))), sp.csr_array(ones((2, 3)))]),
    )
    square = sp.csr_matrix(np.eye(3))
    yield shape_case(c, "spsolve-rhs", lambda: sp.linalg.spsolve(square, ones(4)), (3, 3), (4,))
    yield shape_case(
        c,
        "spsolve-square",
        lambda: sp.linalg.spsolve(sp.csr_matrix(ones((2, 3))), ones(2)),
        (2, 3),
    )
    yield shape_case(c, "eigsh-square", lambda: sp.linalg.eigsh(ones((3, 4))), (3, 4))
    yield dtype_case(
        c, "sparse-object", lambda: sp.csr_matrix(np.array([["a"]], dtype=object)), None, "object"
    )

    # --------------------------------------------------------- interpolate
    yield no_shapes("interp1d-lengths", lambda: scipy.interpolate.interp1d(ones(3), ones(4)))
    line = scipy.interpolate.interp1d(np.arange(3), np.arange(3))
    yield plain_case(c, "interp1d-range", lambda: line(5))
    yield no_shapes(
        "cubic-spline-lengths", lambda: scipy.interpolate.CubicSpline(np.arange(3), ones(4))
    )
    yield shape_case(
        c,
        "grid-interpolator",
        lambda: scipy.interpolate.RegularGridInterpolator((np.arange(3),), ones(4)),
        (3,),
        (4,),
    )

    # -------------------------------------------------- signal, ndimage
    yield no_shapes("convolve-ndim", lambda: scipy.signal.convolve(ones((2, 2)), ones(3)))
    yield no_shapes("ndimage-weights", lambda: scipy.ndimage.convolve(ones((3, 3)), ones(3)))

    # ------------------------------------------------------------ optimize
    yield no_shapes(
        "minimize-bounds",
        lambda: scipy.optimize.minimize(lambda x: x.sum(), ones(2), bounds=[(0, 1)] * 3),
    )
    yield shape_case(
        c,
        "curve-fit-lengths",
        lambda: scipy.optimize.curve_fit(lambda x, k: k * x, ones(3), ones(4)),
        (3,),
        (4,),
        operation="broadcast",
    )

    # ----------------------------------------------------- spatial, stats
    yield no_shapes(
        "cdist-columns", lambda: scipy.spatial.distance.cdist(ones((3, 4)), ones((5, 6)))
    )
    yield shape_case(
        c,
        "euclidean-lengths",
        lambda: scipy.spatial.distance.euclidean(ones(3), ones(4)),
        (3,),
        (4,),
        operation="broadcast",
    )
    tree = scipy.spatial.KDTree(ones((5, 2)))
    yield shape_case(c, "kdtree-query", lambda: tree.query(ones(3)), (3,))
    yield no_shapes("pearsonr-lengths", lambda: scipy.stats.pearsonr(ones(3), ones(4)))
    yield no_shapes("ttest-rel-lengths", lambda: scipy.stats.ttest_rel(ones(3), ones(4)))
    yield plain_case(c, "fft-points", lambda: scipy.fft.fft(ones(3), n=-1))
