"""Arrow tables in shared memory (docs/zero-copy.md): one IPC stream in one block.

A table is written once, as an Arrow IPC stream, straight into a uint8 array
from the arena (:func:`~snakepit.zero_copy.empty`), and opened on the other
side with ``pyarrow.ipc.open_stream`` over that memory: the columns' buffers
point into the block, nothing is copied. The block is an ordinary shared
array, so descriptors, block references and lifetimes are exactly those of
:class:`TensorRef` (the opened table holds the array that holds the block).

pyarrow (and pandas) are imported on first use only: importing snakepit, or
starting a worker, never pays for them.
"""

from __future__ import annotations

import importlib
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit.errors import InvalidDescriptorError, SharedMemoryError

from ._arena import empty
from ._dtypes import dtype_name
from ._mapping import RefMode
from ._ref import Descriptor, TensorRef, array_from_ref, describe, tensor_ref_of

#: What a receiver rebuilds from the stream: a pyarrow.Table, a
#: pyarrow.RecordBatch, a pandas.DataFrame (``Table.to_pandas()``), or a
#: polars DataFrame or Series over the stream's buffers.
KINDS: frozenset[str] = frozenset({"table", "record_batch", "pandas", "polars", "polars_series"})


@dataclass(frozen=True, slots=True)
class ArrowRef(Descriptor):
    """An Arrow IPC stream in a shared-memory block, and what it decodes to.

    ``data`` describes the stream as a 1-D uint8 array whose length is the
    stream's; ``kind`` says what :func:`table_from_ref` returns:
    ``"table"`` (``pyarrow.Table``), ``"record_batch"``
    (``pyarrow.RecordBatch``) or ``"pandas"`` (``pandas.DataFrame``).
    Like a TensorRef it pickles in a few hundred bytes.
    """

    data: TensorRef
    kind: str = "table"

    def __reduce__(self) -> tuple[type[ArrowRef], tuple[object, ...]]:
        return (ArrowRef, (self.data, self.kind))

    def validate(self) -> None:
        """Check the descriptor is self-consistent; InvalidDescriptorError if not.

        The stream's bytes are checked by pyarrow when the table is opened.
        """
        data: object = self.data
        if isinstance(data, TensorRef):
            data.validate()
        Descriptor.validate(self)  # not super(): slots=True recreates the class

    def _problem(self) -> str | None:
        data: object = self.data
        if not isinstance(data, TensorRef):
            return f"data must be a TensorRef, got {type(data).__name__}"
        return _stream_problem(self.kind, data.dtype, data.shape, data.strides)

    @property
    def nbytes(self) -> int:
        """Length of the IPC stream in bytes."""
        return self.data.shape[0]

    def release(self) -> None:
        """Drop the reference this process holds on the block, if any."""
        self.data.release()

    def open(self) -> Any:
        """The table this descriptor names (same as ``table_from_ref(self)``)."""
        return table_from_ref(self)


def _stream_problem(
    kind: object, dtype: str, shape: tuple[int, ...], strides: tuple[int, ...]
) -> str | None:
    """What is wrong with a stream descriptor's kind and layout, or None."""
    if kind not in KINDS:
        return f"unknown kind {kind!r}"
    if dtype != "uint8" or len(shape) != 1 or strides != (1,):
        return (
            "the stream must be a contiguous 1-D uint8 block, got "
            f"dtype {dtype!r}, shape {shape}, strides {strides}"
        )
    return None


def _pyarrow() -> Any:
    import pyarrow

    return pyarrow


# Tables opened over (or written into) shared memory, by id: the weak
# reference to the table, a weak reference to the uint8 array under it and
# the kind. A table keeps its array alive, so the array's reference is valid
# as long as the table's is; entries vanish with their table.
_Entry = tuple["weakref.ref[Any]", "weakref.ref[np.ndarray[Any, Any]]", str]
_shared: dict[int, _Entry] = {}


def _forget(key: int) -> Callable[[weakref.ref[Any]], None]:
    def callback(dead: weakref.ref[Any]) -> None:
        entry = _shared.get(key)
        if entry is not None and entry[0] is dead:
            del _shared[key]

    return callback


def _register(table: Any, array: np.ndarray[Any, Any], kind: str) -> None:
    key = id(table)
    _shared[key] = (weakref.ref(table, _forget(key)), weakref.ref(array), kind)


def _registered(obj: Any) -> tuple[np.ndarray[Any, Any], str] | None:
    entry = _shared.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    array = entry[1]()
    return None if array is None else (array, entry[2])


# The codec's type sets, by which of pandas and polars are imported.
_types: dict[tuple[bool, bool], frozenset[type]] = {}


def _imported_type(module: str, name: str) -> type | None:
    # None too while the module is still importing.
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def frame_types() -> frozenset[type]:
    """The types the codec sends as Arrow streams (call once pyarrow is imported).

    ``pandas.DataFrame`` is among them when pandas is imported, and
    ``polars.DataFrame`` and ``polars.Series`` when polars is. (A set of
    types: pickle itself already hashes the type of every object it saves.)
    """
    # Built-ins only on this path, which every encoding takes: no Python calls.
    modules = sys.modules
    key = (
        isinstance(getattr(modules.get("pandas"), "DataFrame", None), type),
        isinstance(getattr(modules.get("polars"), "Series", None), type)
        and isinstance(getattr(modules.get("polars"), "DataFrame", None), type),
    )
    types = _types.get(key)
    if types is None:
        pa = _pyarrow()
        found: list[type] = [pa.Table, pa.RecordBatch]
        for module, names in (("pandas", ("DataFrame",)), ("polars", ("DataFrame", "Series"))):
            kinds = [_imported_type(module, name) for name in names]
            if all(kind is not None for kind in kinds):
                found += kinds  # type: ignore[arg-type]
        types = _types[key] = frozenset(found)
    return types


def _write(table: Any) -> np.ndarray[Any, Any]:
    """``table`` (Table or RecordBatch) as an IPC stream in a new shared array."""
    pa = _pyarrow()
    batch = isinstance(table, pa.RecordBatch)

    def write(sink: Any) -> None:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            if batch:
                writer.write_batch(table)
            else:
                writer.write_table(table)

    # Measure first (nothing is copied), then write the data once, in place.
    mock = pa.MockOutputStream()
    write(mock)
    size = mock.size()
    array = empty(size, "uint8")
    sink = pa.FixedSizeBufferWriter(pa.py_buffer(array))
    write(sink)
    if sink.tell() != size:  # pragma: no cover - the writer is deterministic
        raise SharedMemoryError(f"Arrow stream took {sink.tell()} bytes, measured {size}")
    sink.close()
    return array


def _open(array: np.ndarray[Any, Any], kind: str) -> Any:
    """The Table or RecordBatch of the stream in ``array``, without copying."""
    pa = _pyarrow()
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(array))
        table = reader.read_next_batch() if kind == "record_batch" else reader.read_all()
        table.validate()
    except (pa.ArrowException, OSError, StopIteration, ValueError) as exc:
        raise InvalidDescriptorError(
            f"shared-memory block does not hold a valid Arrow {kind} stream: {exc}",
            reason="bad Arrow IPC stream",
        ) from None
    return table


def _pandas_faithful(frame: Any) -> bool:
    """Whether ``frame`` survives ``Table.from_pandas(...).to_pandas()`` exactly.

    Object columns are refused (their Arrow type depends on the values: ints
    with a None come back as floats, lists as arrays). Frames made only of
    numpy numbers already travel zero-copy as shared numpy blocks, which is
    cheaper than Arrow; they are refused too. The rest is checked on the
    empty frame: dtypes, index type and names, and columns must come back.
    """
    import numpy as np

    dtypes = list(frame.dtypes)
    index = frame.index
    if any(_is_object(dtype) for dtype in [*dtypes, *_index_dtypes(index)]):
        return False
    if all(isinstance(dtype, np.dtype) for dtype in dtypes):
        return False
    pa = _pyarrow()
    try:
        head = frame.iloc[:0]
        back = pa.Table.from_pandas(head).to_pandas()
    except (pa.ArrowException, ValueError, TypeError):
        return False
    return bool(
        back.dtypes.equals(head.dtypes)
        and back.columns.equals(head.columns)
        and type(back.index) is type(index)
        and list(back.index.names) == list(index.names)
        and _index_dtypes(back.index) == _index_dtypes(index)
    )


def _is_object(dtype: Any) -> bool:
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _index_dtypes(index: Any) -> list[Any]:
    levels = getattr(index, "levels", None)
    if levels is not None:
        return [level.dtype for level in levels]
    return [index.dtype]


def _frame_nbytes(obj: Any, kind: str) -> int:
    if kind == "pandas":
        return int(obj.memory_usage(index=True, deep=False).sum())
    if kind in _POLARS_KINDS:
        return int(obj.estimated_size())
    return int(obj.nbytes)


#: polars kinds: a DataFrame, and a Series (a one-column table under its name).
_POLARS_KINDS = frozenset({"polars", "polars_series"})


def _kind_of(obj: Any) -> str:
    pa = _pyarrow()
    if isinstance(obj, pa.Table):
        return "table"
    if isinstance(obj, pa.RecordBatch):
        return "record_batch"
    if type(obj) is _imported_type("polars", "DataFrame"):
        return "polars"
    if type(obj) is _imported_type("polars", "Series"):
        return "polars_series"
    return "pandas"


def _holds_objects(dtype: Any, object_type: Any) -> bool:
    """Whether a polars dtype is, or nests, ``Object`` (Python objects)."""
    if dtype == object_type:
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None and _holds_objects(inner, object_type):
        return True
    fields = getattr(dtype, "fields", None) or ()
    return any(_holds_objects(field.dtype, object_type) for field in fields)


def _polars_table(obj: Any, kind: str) -> Any:
    """A polars frame or series as an Arrow table over the same buffers, or
    None where Arrow cannot hold it: pickle it then (polars' own pickling
    refuses what cannot be sent)."""
    polars = sys.modules["polars"]
    dtypes = [obj.dtype] if kind == "polars_series" else list(obj.schema.values())
    if any(_holds_objects(dtype, polars.Object) for dtype in dtypes):
        # polars exports Object columns as the objects' addresses, which
        # mean nothing in another process.
        return None
    pa = _pyarrow()
    # The newest Arrow types are polars' own (string views, not offsets):
    # converting to the older ones would copy every string column, both ways.
    newest = polars.CompatLevel.newest()
    try:
        if kind == "polars":
            return obj.to_arrow(compat_level=newest)
        return pa.table({obj.name: obj.to_arrow(compat_level=newest)})
    except Exception:  # polars raises its own errors for unconvertible dtypes
        return None


def block_of(obj: Any, threshold: int) -> tuple[np.ndarray[Any, Any], str] | None:
    """For the codec: the shared uint8 array holding ``obj``'s stream, and its kind.

    Tables already in shared memory (from :func:`share_table` or received)
    are not copied; others at or above ``threshold`` bytes are written into a
    new block. None: send ``obj`` by pickle (small, or not faithful as Arrow).
    """
    found = _registered(obj)
    if found is not None:
        return found
    pa = _pyarrow()
    kind = _kind_of(obj)
    if _frame_nbytes(obj, kind) < threshold:
        return None
    if kind == "pandas":
        if not _pandas_faithful(obj):
            return None
        try:
            obj = pa.Table.from_pandas(obj)
        except (pa.ArrowException, ValueError, TypeError):
            return None
    elif kind in _POLARS_KINDS:
        obj = _polars_table(obj, kind)
        if obj is None:
            return None
    try:
        return _write(obj), kind
    except pa.ArrowException:
        return None  # e.g. an extension type without IPC support: pickle it


def open_ref(ref: ArrowRef, mode: RefMode = "acquire") -> tuple[Any, np.ndarray[Any, Any]]:
    """The object ``ref`` names and the shared array under it."""
    if not isinstance(ref, ArrowRef):
        raise InvalidDescriptorError(f"expected an ArrowRef, got {type(ref).__name__}")
    ref.validate()
    array = array_from_ref(ref.data, mode=mode)
    return _rebuild(array, ref.kind), array


def _rebuild(array: np.ndarray[Any, Any], kind: str) -> Any:
    table = _open(array, kind)
    if kind == "pandas":
        return table.to_pandas()
    if kind in _POLARS_KINDS:
        # polars takes Arrow's buffers as they are (no rechunk, no copy); its
        # frames keep the table, hence the block, alive. Not registered for
        # sending back as is: polars frames can be changed in place.
        polars: Any = importlib.import_module("polars")
        frame = polars.from_arrow(table, rechunk=False)
        return frame.to_series(0) if kind == "polars_series" else frame
    _register(table, array, kind)
    return table


#: The codec's name for this carrier (see _numpy.py for the carrier protocol).
tag = "snakepit.arrow"
_NO_TYPES: frozenset[type] = frozenset()


def types() -> frozenset[type]:
    """Tables, record batches and (with pandas or polars) frames, once pyarrow
    or polars is imported."""
    # Never import pyarrow here unprompted: a process that has imported
    # neither it nor polars has no tables (polars does not need pyarrow until
    # a frame is converted, so its presence is reason enough).
    if "pyarrow" not in sys.modules and "polars" not in sys.modules:
        return _NO_TYPES
    return frame_types()


def to_block(obj: Any, threshold: int) -> tuple[np.ndarray[Any, Any], str] | None:
    """For the codec: the stream's shared array and the kind."""
    return block_of(obj, threshold)


def from_block(array: np.ndarray[Any, Any], extra: object) -> Any:
    """For the codec: the table (or frame) of the stream in a received array."""
    problem = _stream_problem(extra, dtype_name(array.dtype), array.shape, array.strides)
    if problem is not None:
        raise InvalidDescriptorError(f"malformed ArrowRef: {problem}", reason=problem)
    return _rebuild(array, str(extra))


def table_from_ref(ref: ArrowRef, *, mode: RefMode = "acquire") -> Any:
    """The table ``ref`` names, opened over shared memory without a copy.

    Returns a ``pyarrow.Table``, ``pyarrow.RecordBatch`` or (kind
    ``"pandas"``) a ``pandas.DataFrame``, which is converted from the shared
    table and so is a copy. ``mode`` is that of :func:`from_ref`: by default
    the table holds a reference on the block for as long as it (or any slice
    of it) lives. Raises InvalidDescriptorError for a malformed descriptor or
    a block that does not hold an Arrow stream.
    """
    return open_ref(ref, mode)[0]


def share_table(obj: Any) -> Any:
    """Copy a table once into shared memory; returns the table opened over it.

    Accepts a ``pyarrow.Table`` or ``pyarrow.RecordBatch`` (returned as the
    same type), a ``pandas.DataFrame`` or any object exposing the Arrow
    PyCapsule stream interface (``__arrow_c_stream__``; returned as a
    ``pyarrow.Table``). A table already in shared memory is returned as is.
    Passing the result to a pool call sends a descriptor, never the data.
    """
    if _registered(obj) is not None:
        return obj
    pa = _pyarrow()
    table: Any
    kind = "table"
    if isinstance(obj, pa.RecordBatch):
        table, kind = obj, "record_batch"
    elif isinstance(obj, pa.Table):
        table = obj
    elif "pandas" in sys.modules and isinstance(obj, sys.modules["pandas"].DataFrame):
        table = pa.Table.from_pandas(obj)
    elif hasattr(obj, "__arrow_c_stream__"):
        table = pa.RecordBatchReader.from_stream(obj).read_all()
    else:
        raise TypeError(
            "share_table() needs a pyarrow Table or RecordBatch, a pandas DataFrame or an "
            f"object with __arrow_c_stream__, not {type(obj).__name__}"
        )
    array = _write(table)
    shared = _open(array, kind)
    _register(shared, array, kind)
    return shared


def is_shared_table(obj: Any) -> bool:
    """Whether ``obj`` is a table opened over snakepit shared memory."""
    return _registered(obj) is not None


def arrow_ref_of(table: Any) -> ArrowRef:
    """The ArrowRef of a table in shared memory (from :func:`share_table`).

    Like :func:`ref_of`, ``ref.release()`` later drops this process's
    reference on the block.
    """
    found = _registered(table)
    if found is None:
        raise SharedMemoryError(
            "table is not in snakepit shared memory; use snakepit.share_table(table) first"
        )
    array, kind = found
    return ArrowRef(tensor_ref_of(array), kind)


def describe_table(table: Any) -> ArrowRef | None:
    """The ArrowRef of a shared table, or None; registers nothing."""
    found = _registered(table)
    if found is None:
        return None
    ref = describe(found[0])
    return None if ref is None else ArrowRef(ref, found[1])
