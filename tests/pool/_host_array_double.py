"""A test double of a foreign array library: DLPack CPU arrays over numpy.

Its module has a ``from_dlpack`` as array libraries do, so the receiver
rebuilds a :class:`HostArray`; ``_host_array_plain`` has none.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class HostArray:
    """A CPU array that exposes its data only through DLPack."""

    def __init__(self, data: np.ndarray[Any, Any]) -> None:
        self._data = data

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)

    @property
    def data(self) -> np.ndarray[Any, Any]:
        return self._data


def from_dlpack(obj: Any) -> HostArray:
    return HostArray(np.from_dlpack(obj))


class DeviceArray(HostArray):
    """Claims to live on a GPU: its memory must never be read as host memory."""

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise AssertionError("a device array was read through DLPack as host memory")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)

    def __reduce__(self) -> Any:
        # As a GPU library does: copy to the host, pickle the bytes.
        return (_device_array, (self._data.tobytes(), self._data.dtype.str))


def _device_array(data: bytes, dtype: str) -> DeviceArray:
    return DeviceArray(np.frombuffer(data, dtype=dtype))
