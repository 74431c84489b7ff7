"""The host-array carrier: CPU arrays of other libraries, through DLPack.

Any object whose type has ``__dlpack__`` and whose ``__dlpack_device__()`` is
the CPU (JAX arrays, CuPy's host arrays, arrays of libraries snakepit does not
know) travels as numpy arrays do: its data viewed without a copy
(``numpy.from_dlpack``), copied once into a shared block unless it already
lies in one, and rebuilt on the other side over the block by the sender's
library's own ``from_dlpack`` (``jax.numpy.from_dlpack`` for JAX), or as a
numpy array where that library is missing or has none. See
``zero_copy/_numpy.py`` for the carrier protocol.

The codec learns such types as it meets them (:func:`notice`), so no library
is imported to look for its array type: a process that has not imported
JAX has no JAX arrays. numpy arrays and torch tensors have carriers of their
own; pyarrow's arrays travel as Arrow.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit.errors import DtypeError, InvalidDescriptorError

from ._arena import share_array
from ._mapping import sendable_buffer

tag = "snakepit.host_array"
#: DLPack's device type for CPU memory (kDLCPU), and pinned host memory.
_HOST_DEVICES = frozenset({1, 3})
#: Libraries whose arrays other carriers handle (or that pickle better).
_OTHER_CARRIERS = frozenset({"numpy", "torch", "pyarrow", "polars", "pandas"})
#: Where the receiver finds each library's ``from_dlpack``, when not at the
#: top of the module that defines the array type.
_FROM_DLPACK = {"jax": "jax.numpy", "jaxlib": "jax.numpy"}

#: Arrays rebuilt over a received block, by id: (the array, the block's
#: array), both weakly; sending one again sends the block, not a copy. Only
#: while the rebuilt array lives (it holds the block), and only for
#: immutable libraries' arrays (see _IMMUTABLE).
_rebuilt: dict[int, tuple[weakref.ref[Any], weakref.ref[np.ndarray[Any, Any]]]] = {}
_IMMUTABLE = frozenset({"jax", "jaxlib"})

_learned: set[type] = set()
_learned_types: frozenset[type] = frozenset()
_refused: set[type] = set()
#: Every type :func:`notice` has decided on (the codec skips the call for them).
judged: set[type] = set()


def notice(kind: type) -> None:
    """Learn ``kind`` if it is a DLPack array type of a library with no
    carrier of its own (the codec calls this for types it does not know)."""
    import numpy as np

    global _learned_types
    if kind in judged:
        return
    judged.add(kind)
    root = kind.__module__.partition(".")[0]
    if (
        root in _OTHER_CARRIERS
        or issubclass(kind, np.ndarray)
        or not callable(getattr(kind, "__dlpack__", None))
        or not callable(getattr(kind, "__dlpack_device__", None))
    ):
        _refused.add(kind)
        return
    _learned.add(kind)
    _learned_types = frozenset(_learned)


def types() -> frozenset[type]:
    """The DLPack array types met so far."""
    return _learned_types


def _library(obj: Any) -> str:
    """The module that defines ``obj``'s type: where the receiver looks for
    ``from_dlpack`` (then in its top-level package)."""
    return str(type(obj).__module__)


def _rebuilder(module_name: str) -> Any:
    """The ``from_dlpack`` of the library that defines arrays in ``module_name``."""
    root = module_name.partition(".")[0]
    for candidate in (_FROM_DLPACK.get(root), module_name, root):
        if candidate is None:
            continue
        try:
            module = sys.modules.get(candidate) or importlib.import_module(candidate)
        except ImportError:
            continue
        rebuild = getattr(module, "from_dlpack", None)
        if callable(rebuild):
            return rebuild
    return None


def to_block(obj: Any, threshold: int) -> tuple[np.ndarray[Any, Any], str] | None:
    """The shared array holding ``obj``'s data (itself if already shared),
    and the library to rebuild it with; None to pickle ``obj`` (small, not on
    the CPU, or a layout numpy cannot view)."""
    import numpy as np

    entry = _rebuilt.get(id(obj))
    if entry is not None and entry[0]() is obj:
        block = entry[1]()
        if block is not None:
            return block, _library(obj)
    try:
        device = obj.__dlpack_device__()
        if int(device[0]) not in _HOST_DEVICES:
            return None  # device memory: the library's own pickling decides
        view = np.from_dlpack(obj)
    except (BufferError, TypeError, ValueError, RuntimeError, AttributeError):
        return None
    if view.dtype.hasobject:
        return None
    if sendable_buffer(view) is None:
        if view.nbytes < threshold:
            return None
        try:
            view = share_array(view)
        except DtypeError:
            return None
    return view, _library(obj)


def from_block(array: np.ndarray[Any, Any], extra: object) -> Any:
    """The array rebuilt over ``array`` by the library ``extra`` names, or
    ``array`` itself where that library is not installed or cannot."""
    if (
        type(extra) is not str
        or not all(part.isidentifier() for part in extra.split("."))
        or extra.partition(".")[0] in _OTHER_CARRIERS
    ):
        raise InvalidDescriptorError(f"unexpected library {extra!r} in a host-array descriptor")
    rebuild = _rebuilder(extra)
    if rebuild is None:
        return array
    try:
        rebuilt = rebuild(array)
    except (BufferError, TypeError, ValueError, RuntimeError):
        return array
    if extra.partition(".")[0] in _IMMUTABLE:
        _remember(rebuilt, array)
    return rebuilt


def _remember(rebuilt: Any, block: np.ndarray[Any, Any]) -> None:
    key = id(rebuilt)

    def forget(dead: weakref.ref[Any]) -> None:
        entry = _rebuilt.get(key)
        if entry is not None and entry[0] is dead:
            del _rebuilt[key]

    # Not weakly referenceable: sent again, it is copied again.
    with contextlib.suppress(TypeError):
        _rebuilt[key] = (weakref.ref(rebuilt, forget), weakref.ref(block))
