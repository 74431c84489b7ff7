"""CUDA IPC (docs/zero-copy.md) against the driver test double built from csrc/tests/fake_cuda.c.

The double implements the driver's IPC entry points over host shared memory,
so handles really cross processes and ctypes can read the memory behind a
"device" pointer.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from snakepit.errors import DeviceError, DeviceNotAvailableError, InvalidDescriptorError
from snakepit.zero_copy import GPUTensorRef, cuda_driver, export_cuda, open_cuda
from snakepit.zero_copy._cuda import DRIVER_ENV

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "csrc" / "build" / "libfakecuda.so"


@pytest.fixture(scope="module")
def fake_path() -> str:
    if not FAKE.exists():
        # `make test` builds it in c-test; build it here for a lone pytest run.
        subprocess.run(["make", "-s", "-C", str(ROOT / "csrc"), "fakecuda"], check=True)
    return str(FAKE)


@pytest.fixture
def fake(fake_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ctypes.CDLL]:
    monkeypatch.setenv(DRIVER_ENV, fake_path)
    lib = ctypes.CDLL(fake_path)
    yield lib
    assert lib.fakecuOpenCount() == 0
    lib.fakecuReset()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fakecuda-{os.getpid()}-")]


def _alloc(lib: ctypes.CDLL, nbytes: int) -> int:
    ptr = ctypes.c_uint64()
    assert lib.fakecuMemAlloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes)) == 0
    return ptr.value


_CHILD = """
import ctypes, pickle, sys
from snakepit.zero_copy import open_cuda
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
with open_cuda(ref) as tensor:
    cai = tensor.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<f4", cai
    assert tensor.__dlpack_device__() == (2, ref.device_id)
    n = cai["shape"][0]
    values = (ctypes.c_float * n).from_address(cai["data"][0])
    print(",".join(str(v) for v in values))
    for i in range(n):
        values[i] = -values[i]
assert tensor.closed
lib = ctypes.CDLL(sys.argv[2])
dropped = open_cuda(ref)  # closed by its finalizer
assert lib.fakecuOpenCount() == 1
del dropped
assert lib.fakecuOpenCount() == 0, "mapping left open"
"""


def test_without_driver_every_call_raises_device_not_available(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(DRIVER_ENV, str(tmp_path / "libcuda.so.1"))
    with pytest.raises(DeviceNotAvailableError, match=r"libcuda\.so\.1") as info:
        export_cuda(4096, (4,), "float32")
    assert info.value.reason
    ref = GPUTensorRef(b"\0" * 64, 0, (4,), "float32", (4,), 0, 16)
    with pytest.raises(DeviceNotAvailableError, match=r"libcuda\.so\.1"):
        open_cuda(ref)
    with pytest.raises(DeviceNotAvailableError):
        cuda_driver("libm.so.6")  # a library without the driver's entry points


def test_default_driver_is_libcuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DRIVER_ENV, raising=False)
    if Path("/dev/nvidiactl").exists():
        pytest.skip("a real CUDA driver may be present")
    with pytest.raises(DeviceNotAvailableError, match=r"libcuda\.so\.1"):
        cuda_driver()


def test_export_interior_pointer_gives_offset(fake: ctypes.CDLL) -> None:
    _alloc(fake, 1000)
    base = _alloc(fake, 4096)
    ref = export_cuda(base + 64, (8,), "float32")
    assert len(ref.handle) == 64
    assert ref.offset == 64
    assert ref.nbytes == 4096
    assert ref.strides == (4,)
    assert ref.device_id == 0
    whole = export_cuda(base, (1024,), "float32")
    assert whole.handle == ref.handle
    assert whole.offset == 0


def test_open_in_subprocess_reads_and_writes_back(fake: ctypes.CDLL, fake_path: str) -> None:
    base = _alloc(fake, 4096)
    values = (ctypes.c_float * 8).from_address(base + 128)
    for i in range(8):
        values[i] = i + 0.5
    ref = export_cuda(base + 128, (8,), "float32")
    env = {**os.environ, DRIVER_ENV: fake_path}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, pickle.dumps(ref).hex(), fake_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ",".join(str(i + 0.5) for i in range(8))
    assert [values[i] for i in range(8)] == [-(i + 0.5) for i in range(8)]


def test_same_process_open_is_refused(fake: ctypes.CDLL) -> None:
    ref = export_cuda(_alloc(fake, 256), (64,), "float32")
    with pytest.raises(DeviceError, match="process that exported it") as info:
        open_cuda(ref)
    assert not isinstance(info.value, DeviceNotAvailableError)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"handle": b"\0" * 63}, "64 bytes"),
        ({"handle": "x" * 64}, "64 bytes"),
        ({"offset": -8}, "offset"),
        ({"nbytes": 0}, "positive"),
        ({"device_id": -1}, "device_id"),
        ({"shape": (2000,)}, "spans"),
        ({"offset": 4090}, "spans"),
        ({"strides": (-4,)}, "spans"),
        ({"strides": (4, 4)}, "disagree"),
        ({"dtype": "float128"}, "dtype"),
    ],
)
def test_forged_refs_are_refused(fake: ctypes.CDLL, change: dict[str, object], needle: str) -> None:
    ref = export_cuda(_alloc(fake, 4096), (8,), "float32")
    forged = dataclasses.replace(ref, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidDescriptorError, match=needle):
        open_cuda(forged)


def test_forged_handle_bytes_are_refused(fake: ctypes.CDLL) -> None:
    ref = export_cuda(_alloc(fake, 4096), (8,), "float32")
    forged = dataclasses.replace(ref, handle=b"\x01" * 64)
    with pytest.raises(InvalidDescriptorError, match="rejected by the driver"):
        open_cuda(forged)


def test_nbytes_larger_than_the_real_allocation_is_refused(
    fake: ctypes.CDLL, fake_path: str
) -> None:
    ref = export_cuda(_alloc(fake, 256), (8,), "float32")
    forged = dataclasses.replace(ref, nbytes=1 << 20, shape=(1000,))
    script = (
        "import pickle, sys\n"
        "from snakepit.errors import InvalidDescriptorError\n"
        "from snakepit.zero_copy import open_cuda\n"
        "try:\n"
        "    open_cuda(pickle.loads(bytes.fromhex(sys.argv[1])))\n"
        "except InvalidDescriptorError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, pickle.dumps(forged).hex()],
        env={**os.environ, DRIVER_ENV: fake_path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "refused:" in result.stdout
    assert "allocation has 256" in result.stdout


def test_export_refuses_bad_arguments(fake: ctypes.CDLL) -> None:
    with pytest.raises(ValueError, match="ptr"):
        export_cuda(0, (1,), "float32")
    with pytest.raises(ValueError, match="device_id"):
        export_cuda(4096, (1,), "float32", device_id=99)
    # Host memory that is no device allocation: the driver says so.
    buf = ctypes.create_string_buffer(64)
    with pytest.raises(DeviceError, match="not CUDA memory"):
        export_cuda(ctypes.addressof(buf), (16,), "float32")
