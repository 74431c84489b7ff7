"""The one translator of C-core status codes (snakepit.zero_copy._errors)."""

from __future__ import annotations

import errno
import pickle
import re
from pathlib import Path

import pytest

from snakepit import _core
from snakepit._core import CoreError, Status
from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
    UnshareableMemoryError,
)
from snakepit.zero_copy._errors import core_error, core_errors, status_error

GIB = 1 << 30
MIB = 1 << 20
HEADER = Path(__file__).resolve().parents[2] / "csrc" / "snakepit_core.h"


def _header_codes() -> dict[str, int]:
    text = HEADER.read_text()
    body = re.search(r"typedef enum sp_status \{(.*?)\} sp_status;", text, re.S)
    assert body is not None, "sp_status not found in the header"
    return {m[0]: int(m[1]) for m in re.findall(r"SP_(?:ERR_)?(\w+)\s*=\s*(-?\d+)", body[1])}


def test_core_status_matches_c_header() -> None:
    codes = _header_codes()
    # Every status the header defines has a member with its value, and no more.
    assert {m.name: m.value for m in Status} == codes
    assert len(Status) == 19
    assert _core.Status is Status


def test_core_raises_with_status_members() -> None:
    with pytest.raises(CoreError) as info:
        _core.name_owner("/not-a-snakepit-name")
    assert info.value.status == Status.NAME
    assert _core.name_status("x" * 100) == Status.NAME


def test_cuda_driver_statuses_map_to_device_errors() -> None:
    missing = status_error(int(Status.NO_DRIVER), 0, operation="load the CUDA driver")
    assert isinstance(missing, DeviceNotAvailableError)
    assert "libcuda.so.1" in str(missing)
    failed = status_error(int(Status.CUDA), 0, operation="open an IPC handle")
    assert isinstance(failed, DeviceError)
    assert "open an IPC handle failed" in str(failed)
    pool = status_error(int(Status.UNSHAREABLE), 0, operation="export", detail="pool memory")
    assert isinstance(pool, UnshareableMemoryError)
    assert pool.reason == "pool memory"


@pytest.mark.parametrize(
    ("status", "cls", "needle"),
    [
        (Status.NAME, InvalidDescriptorError, "/snakepit-<pid>-<16 hex digits>"),
        (Status.MAGIC, InvalidDescriptorError, "magic"),
        (Status.VERSION, InvalidDescriptorError, "version"),
        (Status.SIZE, InvalidDescriptorError, "size"),
        (Status.RANGE, InvalidDescriptorError, "outside"),
        (Status.OVERFLOW, InvalidDescriptorError, "overflow"),
        (Status.NOTFOUND, InvalidDescriptorError, "no such region"),
        (Status.PERM, InvalidDescriptorError, "permission"),
        (Status.INVALID, SharedMemoryError, "invalid argument"),
        (Status.NOMEM, SharedMemoryError, "out of memory"),
        (Status.EXISTS, SharedMemoryError, "exists"),
        (Status.OS, SharedMemoryError, "Input/output error"),
        (Status.REFCOUNT, SharedMemoryError, "reference count"),
    ],
)
def test_status_error_maps_codes(status: Status, cls: type[SnakepitError], needle: str) -> None:
    exc = status_error(int(status), errno.EIO, operation="attach region", name="/snakepit-9-x")
    assert type(exc) is cls
    assert exc.message.startswith("attach region failed for region '/snakepit-9-x'")
    assert needle in exc.message
    assert isinstance(exc, SharedMemoryError)
    assert exc.status == int(status)
    assert exc.name == "/snakepit-9-x"


def test_status_error_nospace_names_sizes_and_fix() -> None:
    exc = status_error(
        Status.NOSPACE,
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


def test_status_error_nospace_measures_dev_shm_when_unknown() -> None:
    exc = status_error(Status.NOSPACE, 0, operation="allocate", requested=10)
    assert isinstance(exc, SharedMemoryExhaustedError)
    if Path("/dev/shm").is_dir():
        assert exc.available is not None
        assert exc.available >= 0
    else:  # pragma: no cover - platforms without /dev/shm
        assert exc.available is None


def test_status_error_cap() -> None:
    exc = status_error(Status.CAP, 0, operation="allocate", requested=GIB, available=100 * MIB)
    assert type(exc) is SharedMemoryCapError
    assert isinstance(exc, SharedMemoryExhaustedError)
    assert "1.00 GiB" in exc.message
    assert "100.00 MiB left under snakepit's shared-memory cap" in exc.message
    assert "raise snakepit's shared-memory cap" in (exc.suggestion or "")


def test_status_error_rejects_ok_and_survives_unknown_codes() -> None:
    with pytest.raises(ValueError, match="SP_OK"):
        status_error(0, 0, operation="noop")
    exc = status_error(-99, 0, operation="frob")
    assert type(exc) is SharedMemoryError
    assert "unknown core status -99" in exc.message


def test_status_error_results_pickle() -> None:
    exc = status_error(Status.NAME, 0, operation="attach", name="/etc/passwd")
    clone = pickle.loads(pickle.dumps(exc))
    assert isinstance(clone, InvalidDescriptorError)
    assert clone.name == "/etc/passwd"
    assert clone.reason == exc.reason


def test_core_error_takes_the_name_the_core_reported() -> None:
    exc = core_error(CoreError(Status.NOTFOUND, errno.ENOENT, "attach", "/snakepit-1-ab"), "open")
    assert type(exc) is InvalidDescriptorError
    assert exc.name == "/snakepit-1-ab"
    assert exc.os_errno == errno.ENOENT


def test_core_errors_block_translates_and_lets_others_through() -> None:
    needle = "look up failed for region 'r'"
    with (
        pytest.raises(InvalidDescriptorError, match=needle) as info,
        core_errors("look up", name="r"),
    ):
        raise CoreError(Status.MAGIC, 0, "look up block", "ignored")
    assert info.value.__suppress_context__
    with pytest.raises(KeyError), core_errors("look up"):
        raise KeyError("x")
    with core_errors("nothing"):
        pass


def test_cuda_open_rejections_are_descriptor_errors() -> None:
    error = CoreError(Status.CUDA, 0, "open CUDA IPC handle")
    error.cuda_result = 400  # CUDA_ERROR_INVALID_HANDLE
    error.detail = "cuIpcOpenMemHandle_v2 failed"
    exc = core_error(error, "open", device_id=1)
    assert type(exc) is InvalidDescriptorError
    assert "rejected by the driver" in exc.message
    error.cuda_result = _core.CUDA_ERROR_INVALID_CONTEXT
    exc = core_error(error, "open", device_id=1)
    assert type(exc) is DeviceError
    assert "process that exported it" in exc.message
    assert exc.device == "cuda:1"
    # The same CUresult from another operation is a device error, not a bad descriptor.
    error.cuda_result = 400
    assert type(core_error(error, "export", device_id=1)) is DeviceError
