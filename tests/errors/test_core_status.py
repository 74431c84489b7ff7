"""TRANSITIONAL tests of ``snakepit.errors._core_status`` (moved out of test_hierarchy.py).

The C-status translator moves to ``snakepit/zero_copy/_errors.py`` in issue 12
(the wire engineer's branch, which ports these tests there). Delete this file
together with ``snakepit/errors/_core_status.py`` when that branch is merged.
"""

from __future__ import annotations

import errno
import pickle
import re
from pathlib import Path

import pytest

from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
)
from snakepit.errors._core_status import CoreStatus, from_core_status

GIB = 1 << 30
MIB = 1 << 20


def _header_codes() -> dict[str, int]:
    header = Path(__file__).resolve().parents[2] / "csrc" / "snakepit_core.h"
    text = header.read_text()
    return {m[0]: int(m[1]) for m in re.findall(r"SP_(?:ERR_)?(\w+)\s*=\s*(-?\d+)", text)}


def test_core_status_matches_c_header() -> None:
    codes = _header_codes()
    for member in CoreStatus:
        assert codes[member.name] == member.value
    # Every status the header defines has a member (none was forgotten).
    statuses = {name for name, value in codes.items() if value <= 0}
    assert statuses <= {member.name for member in CoreStatus}
    assert len(CoreStatus) == 18


def test_cuda_driver_statuses_map_to_device_errors() -> None:
    missing = from_core_status(int(CoreStatus.NO_DRIVER), 0, operation="load the CUDA driver")
    assert isinstance(missing, DeviceNotAvailableError)
    assert "libcuda.so.1" in str(missing)
    failed = from_core_status(int(CoreStatus.CUDA), 0, operation="open an IPC handle")
    assert isinstance(failed, DeviceError)
    assert "open an IPC handle failed" in str(failed)


@pytest.mark.parametrize(
    ("status", "cls", "needle"),
    [
        (CoreStatus.NAME, InvalidDescriptorError, "/snakepit-<pid>-<16 hex digits>"),
        (CoreStatus.MAGIC, InvalidDescriptorError, "magic"),
        (CoreStatus.VERSION, InvalidDescriptorError, "version"),
        (CoreStatus.SIZE, InvalidDescriptorError, "size"),
        (CoreStatus.RANGE, InvalidDescriptorError, "outside"),
        (CoreStatus.OVERFLOW, InvalidDescriptorError, "overflow"),
        (CoreStatus.NOTFOUND, InvalidDescriptorError, "no such region"),
        (CoreStatus.PERM, InvalidDescriptorError, "permission"),
        (CoreStatus.INVALID, SharedMemoryError, "invalid argument"),
        (CoreStatus.NOMEM, SharedMemoryError, "out of memory"),
        (CoreStatus.EXISTS, SharedMemoryError, "exists"),
        (CoreStatus.OS, SharedMemoryError, "Input/output error"),
        (CoreStatus.REFCOUNT, SharedMemoryError, "reference count"),
    ],
)
def test_from_core_status_maps_codes(
    status: CoreStatus, cls: type[SnakepitError], needle: str
) -> None:
    exc = from_core_status(int(status), errno.EIO, operation="attach region", name="/snakepit-9-x")
    assert type(exc) is cls
    assert exc.message.startswith("attach region failed for region '/snakepit-9-x'")
    assert needle in exc.message
    assert isinstance(exc, SharedMemoryError)
    assert exc.status == int(status)
    assert exc.name == "/snakepit-9-x"


def test_from_core_status_nospace_names_sizes_and_fix() -> None:
    exc = from_core_status(
        CoreStatus.NOSPACE,
        errno.ENOSPC,
        operation="allocate",
        requested=2 * GIB,
        available=64 * MIB,
    )
    assert type(exc) is SharedMemoryExhaustedError
    assert exc.requested == 2 * GIB
    assert exc.available == 64 * MIB
    text = str(exc)
    assert "2.00 GiB" in text
    assert "64.00 MiB left in /dev/shm" in text
    assert "--shm-size" in text
    assert "mount -o remount,size=" in text
    assert "1.94 GiB" in exc.hint  # the shortfall


def test_from_core_status_nospace_measures_dev_shm_when_unknown() -> None:
    exc = from_core_status(CoreStatus.NOSPACE, 0, operation="allocate", requested=10)
    assert isinstance(exc, SharedMemoryExhaustedError)
    if Path("/dev/shm").is_dir():
        assert exc.available is not None
        assert exc.available >= 0
    else:  # pragma: no cover - platforms without /dev/shm
        assert exc.available is None


def test_from_core_status_cap() -> None:
    exc = from_core_status(
        CoreStatus.CAP, 0, operation="allocate", requested=GIB, available=100 * MIB
    )
    assert type(exc) is SharedMemoryCapError
    assert isinstance(exc, SharedMemoryExhaustedError)
    assert "1.00 GiB" in exc.message
    assert "100.00 MiB left under snakepit's shared-memory cap" in exc.message
    assert "raise snakepit's shared-memory cap" in (exc.suggestion or "")


def test_from_core_status_rejects_ok_and_survives_unknown_codes() -> None:
    with pytest.raises(ValueError, match="SP_OK"):
        from_core_status(0, 0, operation="noop")
    exc = from_core_status(-99, 0, operation="frob")
    assert type(exc) is SharedMemoryError
    assert "unknown core status -99" in exc.message


def test_from_core_status_results_pickle() -> None:
    exc = from_core_status(CoreStatus.NAME, 0, operation="attach", name="/etc/passwd")
    clone = pickle.loads(pickle.dumps(exc))
    assert isinstance(clone, InvalidDescriptorError)
    assert clone.name == "/etc/passwd"
    assert clone.reason == exc.reason
