"""PyTorch CPU tensors through shared memory, without importing torch ourselves.

A CPU tensor at or above the threshold is copied once into the arena (like a
numpy array that is not shared yet) and travels as a TensorRef plus its torch
dtype; the receiver rebuilds a tensor over the shared block with
``torch.from_numpy``, which keeps the block alive for as long as the tensor
lives. Tensors that already lie in snakepit shared memory (made by
:func:`share_tensor`, or received from another process) travel without any
copy, views included. Tensors that carry more than data (autograd state,
sparse, quantized, non-CPU) are left to torch's own pickling.
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from snakepit._util import DTYPE_NAMES
from snakepit.errors import InvalidDescriptorError

from . import _dtypes
from ._arena import share_array

#: The codec's name for this carrier (see _numpy.py for the carrier protocol).
tag = "snakepit.torch"
_NO_TYPES: frozenset[type] = frozenset()
_types: dict[type, frozenset[type]] = {}

#: torch dtypes that travel through shared memory (torch.from_numpy takes them).
DTYPES = frozenset(DTYPE_NAMES)


# Storage address -> the shared array the storage was built over. Weak: the
# tensor's storage holds the array, so an entry lives as long as the memory.
_shared_storage: weakref.WeakValueDictionary[int, np.ndarray[Any, Any]] = (
    weakref.WeakValueDictionary()
)


def _over(array: np.ndarray[Any, Any], dtype_name: str) -> Any:
    import numpy as np
    import torch  # the sender sent a tensor: the receiver needs torch to rebuild it

    if dtype_name == "bfloat16":
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(array)
    _shared_storage[tensor.untyped_storage().data_ptr()] = array
    return tensor


def _shared_view(tensor: Any) -> np.ndarray[Any, Any] | None:
    """``tensor`` as a numpy view of the shared array under its storage, if any."""
    import numpy as np

    array = _shared_storage.get(tensor.untyped_storage().data_ptr())
    if array is None or not array.flags.c_contiguous:
        return None
    flat = array.reshape(-1)
    itemsize = tensor.element_size()
    if flat.itemsize != itemsize:
        return None
    offset = tensor.storage_offset()
    extent = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True))
    if offset < 0 or min(tensor.stride(), default=0) < 0 or offset + extent > flat.size:
        return None
    if tensor.nelement() == 0:
        return None
    # Built on `flat` itself (as_strided would hide it behind a proxy object),
    # so the view's base chain still leads to the shared buffer.
    view: np.ndarray[Any, Any] = np.ndarray(
        tuple(tensor.shape),
        dtype=flat.dtype,
        buffer=flat,
        offset=offset * itemsize,
        strides=tuple(s * itemsize for s in tensor.stride()),
    )
    return view


def shared_array(tensor: Any) -> np.ndarray[Any, Any] | None:
    """The numpy view of shared memory a CPU tensor lies in, or None."""
    if tensor.device.type != "cpu" or tensor.is_conj() or tensor.is_neg():
        return None
    return _shared_view(tensor)


def share_tensor(tensor: Any) -> Any:
    """A CPU tensor over shared memory with ``tensor``'s values (one copy).

    Like :func:`snakepit.share` for numpy arrays: pass the result (or views of
    it) to pool calls and only a descriptor travels. Tensors already in shared
    memory are returned as they are.
    """
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"share_tensor() needs a torch.Tensor, not {type(tensor).__name__}")
    if _shared_view(tensor) is not None:
        return tensor
    found = shared_copy(tensor, threshold=0)
    if found is None:
        raise TypeError(
            "only dense CPU tensors without autograd state can be shared "
            "(detach() it, or move it to the CPU first)"
        )
    array, dtype_name = found
    return _over(array, dtype_name)


def tensor_type() -> type | None:
    """``torch.Tensor`` if this process has imported torch, else None."""
    torch = sys.modules.get("torch")
    tensor: type | None = getattr(torch, "Tensor", None)
    return tensor


def shared_copy(tensor: Any, threshold: int) -> tuple[np.ndarray[Any, Any], str] | None:
    """The tensor's data copied into shared memory, and its dtype name.

    None when the tensor should be pickled by torch instead: below
    ``threshold``, not a plain dense CPU tensor, or autograd attached.
    """
    import torch  # already imported: the caller holds one of its tensors

    if (
        tensor.device.type != "cpu"
        or tensor.layout != torch.strided
        or tensor.requires_grad
        or tensor.is_quantized
    ):
        return None
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in DTYPES:
        return None
    if not tensor.is_conj() and not tensor.is_neg():
        view = _shared_view(tensor)
        if view is not None:
            return view, name  # already in shared memory, whatever its size: no copy
    if tensor.element_size() * tensor.nelement() < threshold:
        return None
    data = tensor.detach().resolve_conj().resolve_neg()
    # numpy has no bfloat16: its bits travel as snakepit's tagged 2-byte type.
    bits = data.view(torch.int16).numpy().view(_dtypes.BFLOAT16) if name == "bfloat16" else None
    return share_array(data.numpy() if bits is None else bits), name


def types() -> frozenset[type]:
    """``{torch.Tensor}`` once this process has imported torch, else nothing."""
    tensor = tensor_type()
    if tensor is None:
        return _NO_TYPES
    found = _types.get(tensor)
    if found is None:
        found = _types[tensor] = frozenset({tensor})
    return found


def to_block(tensor: Any, threshold: int) -> tuple[np.ndarray[Any, Any], str] | None:
    """For the codec: the shared array under ``tensor`` and its dtype name."""
    return shared_copy(tensor, threshold)


def from_block(array: np.ndarray[Any, Any], extra: object) -> Any:
    """For the codec: the tensor over a received array (``extra``: its dtype name)."""
    return tensor_over(array, extra)


def tensor_over(array: np.ndarray[Any, Any], dtype_name: object) -> Any:
    """A torch tensor over ``array``'s memory (no copy), of the dtype it was sent as."""
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise InvalidDescriptorError(f"unsupported torch dtype {dtype_name!r} in a descriptor")
    if dtype_name == "bfloat16":
        if array.dtype != _dtypes.BFLOAT16:
            raise InvalidDescriptorError(f"a bfloat16 tensor arrived as {array.dtype}")
    elif array.dtype.name != dtype_name:  # numpy and torch share these names
        raise InvalidDescriptorError(f"a {dtype_name} tensor arrived as {array.dtype}")
    return _over(array, dtype_name)
