"""CUDA devices by UUID: the same GPU under each process's own ordinals (docs/zero-copy.md).

Ordinals are per process: a worker started with ``CUDA_VISIBLE_DEVICES=1``
calls the supervisor's ``cuda:1`` ``cuda:0``. A :class:`GPUTensorRef` therefore
names its device by UUID (``cuDeviceGetUuid_v2``, written as NVML and
``nvidia-smi -L`` write it: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``), and
the receiving process looks the UUID up among the devices it can see
(``cuDeviceGetCount`` + one UUID per ordinal, read once per driver). A device
the process cannot see raises DeviceNotAvailableError; it never falls back to
the sender's ordinal, which would name another GPU.
"""

from __future__ import annotations

import os
import re
import threading

from snakepit._core import CUDA_UUID_SIZE, CudaDriver
from snakepit.errors import DeviceNotAvailableError

from ._errors import core_errors

_UUID_TEXT = re.compile(
    r"(?:GPU-|MIG-)?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})",
    re.IGNORECASE,
)

# id(driver) -> (driver, the UUID of each ordinal). A process's devices are
# fixed once cuInit has read CUDA_VISIBLE_DEVICES, so one read is enough.
_tables: dict[int, tuple[CudaDriver, tuple[bytes, ...]]] = {}
_tables_lock = threading.Lock()


def uuid_text(raw: bytes) -> str:
    """``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` for 16 UUID bytes."""
    if len(raw) != CUDA_UUID_SIZE:
        raise ValueError(f"a CUDA UUID has {CUDA_UUID_SIZE} bytes, got {len(raw)}")
    h = raw.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid_bytes(text: str) -> bytes | None:
    """The 16 bytes of a UUID written as :func:`uuid_text` does (``GPU-``/``MIG-`` optional)."""
    match = _UUID_TEXT.fullmatch(text) if isinstance(text, str) else None
    return bytes.fromhex("".join(match.groups())) if match else None


def device_uuids(driver: CudaDriver) -> tuple[bytes, ...]:
    """The UUID of each device this process sees, by ordinal (cached per driver)."""
    with _tables_lock:
        entry = _tables.get(id(driver))
        if entry is not None and entry[0] is driver:
            return entry[1]
    with core_errors("load"):
        count = driver.device_count()
        table = tuple(driver.device_uuid(i) for i in range(count))
    with _tables_lock:
        _tables[id(driver)] = (driver, table)
    return table


def device_uuid(device_id: int, driver: CudaDriver) -> str:
    """The UUID text of this process's ``cuda:<device_id>``."""
    table = device_uuids(driver)
    if not 0 <= device_id < len(table):
        raise DeviceNotAvailableError(
            f"cuda:{device_id} does not exist here: this process sees {len(table)} CUDA "
            f"device(s){_mask()}",
            device=f"cuda:{device_id}",
            reason=f"ordinal {device_id} out of range [0, {len(table)}){_mask()}",
        )
    return uuid_text(table[device_id])


def ordinal_of(uuid: str, driver: CudaDriver) -> int:
    """This process's ordinal of the device named ``uuid``.

    Raises DeviceNotAvailableError when this process cannot see it (another
    ``CUDA_VISIBLE_DEVICES``, or another machine).
    """
    raw = uuid_bytes(uuid)
    if raw is None:
        raise ValueError(f"not a CUDA device UUID: {uuid!r}")
    table = device_uuids(driver)
    for ordinal, seen in enumerate(table):
        if seen == raw:
            return ordinal
    visible = ", ".join(uuid_text(u) for u in table) or "none"
    raise not_visible(raw, f"it sees {len(table)} CUDA device(s) ({visible})")


def not_visible(uuid: bytes | str, why: str) -> DeviceNotAvailableError:
    """The DeviceNotAvailableError for a GPU this process cannot see, and ``why``."""
    name = uuid_text(uuid) if isinstance(uuid, bytes) else uuid
    reason = f"this process cannot see device {name}: {why}{_mask()}"
    return DeviceNotAvailableError(
        f"CUDA device {name} is not visible in this process: {reason}",
        device=name,
        reason=reason,
        suggestion=(
            "give this process the producer's GPU (CUDA_VISIBLE_DEVICES must include it), "
            "or move the tensor to a device both processes see"
        ),
    )


def _mask() -> str:
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if mask is None else f" under CUDA_VISIBLE_DEVICES={mask!r}"


__all__ = ["device_uuid", "device_uuids", "not_visible", "ordinal_of", "uuid_bytes", "uuid_text"]
