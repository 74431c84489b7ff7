"""PyArrow, raised at test time."""

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
