"""The user verbs, one set for every kind of data: share, ref_of, from_ref, is_shared.

Each dispatches on the type of its argument: numpy arrays (the built-in
kind), torch CPU tensors and Arrow tables/record batches. torch and pyarrow
are consulted only when this process has already imported them, so a
process that never touches them never pays for them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit.errors import SharedMemoryError

from . import _arrow, _torch
from ._arena import is_shared_array, share_array
from ._cuda import GPUTensorRef, open_cuda
from ._cuda_arrays import CudaArray, is_cuda_producer
from ._mapping import RefMode
from ._ref import TensorRef, array_from_ref, tensor_ref_of


def _is_tensor(obj: object) -> bool:
    tensor = _torch.tensor_type()
    return tensor is not None and isinstance(obj, tensor)


def _is_arrow(obj: object) -> bool:
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(obj, (pa.Table, pa.RecordBatch))


def share(obj: Any) -> Any:
    """Copy ``obj`` once into shared memory; objects already there are returned.

    A torch tensor gives a tensor over shared memory, a ``pyarrow.Table`` or
    ``RecordBatch`` the table opened over shared memory (see
    :func:`share_table`, which also takes pandas frames); anything else is
    taken as a numpy array (``numpy.asarray``). Passing the result to a pool
    call sends a descriptor, never the data. An array in a region that is
    gone by name (its owner, a worker, died) is copied too: it is valid here,
    but no other process could open it.
    """
    import numpy as np

    if type(obj) is np.ndarray:
        return share_array(obj)
    if _is_tensor(obj):
        return _torch.share_tensor(obj)
    if _is_arrow(obj):
        return _arrow.share_table(obj)
    return share_array(obj)


def ref_of(obj: Any) -> Any:
    """The descriptor of an object in snakepit shared memory.

    A :class:`TensorRef` for a numpy array or a shared torch tensor, an
    :class:`ArrowRef` for a shared table. Small and picklable: another process
    opens it with :func:`from_ref`. ``ref.release()`` later drops this
    process's reference on the block. SharedMemoryError if ``obj`` is not in
    shared memory (:func:`share` it first), TypeError for other types.
    """
    import numpy as np

    if type(obj) is np.ndarray:
        return tensor_ref_of(obj)
    if _arrow.is_shared_table(obj) or _is_arrow(obj):
        return _arrow.arrow_ref_of(obj)
    if _is_tensor(obj):
        view = _torch.shared_array(obj)
        if view is None:
            raise SharedMemoryError(
                "tensor is not in snakepit shared memory; use snakepit.share(tensor) first"
            )
        return tensor_ref_of(view)
    return tensor_ref_of(obj)


def from_ref(ref: Any, *, mode: RefMode = "acquire", readonly: bool = False) -> Any:
    """What a descriptor names, opened without copying.

    A :class:`TensorRef` gives a numpy array, an :class:`ArrowRef` its table
    (or frame), a :class:`GPUTensorRef` a :class:`CudaIPCTensor`. ``mode``:
    ``"acquire"`` takes a reference on the block that the result holds until
    it dies; ``"borrow"`` takes none (the sender keeps the block alive, as the
    pool does for call arguments); ``"adopt"`` takes over a reference the
    sender already added for us (results in transit). ``readonly`` applies to
    arrays. Raises InvalidDescriptorError for a forged or stale descriptor.
    """
    if type(ref) is TensorRef:
        return array_from_ref(ref, mode=mode, readonly=readonly)
    if isinstance(ref, _arrow.ArrowRef):
        return _arrow.table_from_ref(ref, mode=mode)
    if isinstance(ref, GPUTensorRef):
        return open_cuda(ref)
    return array_from_ref(ref, mode=mode, readonly=readonly)


def is_shared(obj: object) -> bool:
    """Whether ``obj`` (array, tensor or table) lives in snakepit shared memory."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return is_shared_array(obj)
    if _arrow.is_shared_table(obj):
        return True
    return _is_tensor(obj) and _torch.shared_array(obj) is not None


def from_dlpack(obj: Any) -> np.ndarray[Any, Any] | CudaArray:
    """``obj``'s data, in snakepit shared memory (host data) or where it is (CUDA data).

    A :class:`TensorRef` or an array already in snakepit shared memory gives
    a zero-copy view. Any other host DLPack producer (a torch CPU tensor, a
    numpy array, ...) is taken with ``numpy.from_dlpack`` and copied **once**
    into shared memory with :func:`snakepit.share`, so that it can then travel
    to workers without further copies. A producer on a CUDA device (kDLCUDA:
    a torch or CuPy CUDA tensor, a ``CudaIPCTensor``) stays on the device: the
    result is a :class:`~snakepit.zero_copy.CudaArray` over the same memory,
    with ``__dlpack__`` and ``__cuda_array_interface__`` (no copy, and neither
    torch nor CuPy is imported).
    """
    import numpy as np

    if isinstance(obj, TensorRef):
        return array_from_ref(obj)
    if isinstance(obj, np.ndarray) and is_shared_array(obj):
        return obj
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"{type(obj).__name__} is not a DLPack producer (no __dlpack__)")
    if isinstance(obj, GPUTensorRef) or is_cuda_producer(obj):
        return CudaArray.from_dlpack(obj)
    return share_array(np.from_dlpack(obj))
