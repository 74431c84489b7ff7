"""CUDA devices by UUID, memory kinds legacy IPC cannot share, and ordering, on the driver double.

Workers see their own ``CUDA_VISIBLE_DEVICES``: the double renumbers its
devices per process the way the real driver does, so these tests open refs in
subprocesses with other masks and check, through ``fakecuOpenDevice``, that the
mapping was made on the right physical GPU.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pickle
from collections.abc import Iterator

import pytest

from snakepit.errors import DeviceError, InvalidDescriptorError, UnshareableMemoryError
from snakepit.zero_copy import (
    CudaBuffer,
    cuda_driver,
    export_cuda,
    export_cuda_copy,
    memory_kind,
    open_cuda,
    synchronize_cuda,
)
from snakepit.zero_copy._cuda import DRIVER_ENV
from snakepit.zero_copy._cuda_devices import device_uuids, uuid_bytes, uuid_text

from ._cuda_double import alloc, build_fake, fake_uuid, load, run_child


@pytest.fixture(scope="module")
def fake_path() -> str:
    return build_fake()


@pytest.fixture
def fake(fake_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ctypes.CDLL]:
    monkeypatch.setenv(DRIVER_ENV, fake_path)
    lib = load(fake_path)
    yield lib
    assert lib.fakecuOpenCount() == 0
    assert lib.fakecuPendingCount() == 0
    lib.fakecuReset()
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"fakecuda-{os.getpid()}-")]


# A child that opens the ref in argv[1] and reports where it landed.
_OPEN = """
import ctypes, pickle, sys
from snakepit.zero_copy import open_cuda
lib = ctypes.CDLL(sys.argv[2])
lib.fakecuOpenDevice.argtypes = [ctypes.c_uint64]
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
with open_cuda(ref) as tensor:
    n = tensor.ref.extent()[1] - tensor.ref.offset  # bytes from element 0 on
    values = (ctypes.c_uint8 * n).from_address(tensor.ptr)
    print(tensor.device_id, tensor.__dlpack_device__()[1], lib.fakecuOpenDevice(tensor.ptr),
          bytes(values).hex())
"""

# A child that expects open_cuda to fail with a given error type.
_REFUSE = """
import pickle, sys
import snakepit.errors as errors
from snakepit.zero_copy import open_cuda
kind = getattr(errors, sys.argv[2])
try:
    open_cuda(pickle.loads(bytes.fromhex(sys.argv[1])))
except kind as exc:
    print("refused:", type(exc).__name__, exc)
"""


def _open_in_child(fake_path: str, ref: object, mask: str | None) -> tuple[int, int, int, bytes]:
    result = run_child(
        _OPEN,
        pickle.dumps(ref).hex(),
        fake_path,
        fake_path=fake_path,
        env={"CUDA_VISIBLE_DEVICES": mask},
    )
    assert result.returncode == 0, result.stderr
    local, dl_id, physical, data = result.stdout.split()
    return int(local), int(dl_id), int(physical), bytes.fromhex(data)


def _fill(ptr: int, data: bytes) -> None:
    ctypes.memmove(ptr, data, len(data))


def test_uuid_text_round_trip() -> None:
    raw = bytes(range(16))
    text = uuid_text(raw)
    assert text == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert uuid_bytes(text) == raw
    assert uuid_bytes(text.upper().replace("GPU-", "MIG-")) == raw
    assert uuid_bytes(text[4:]) == raw
    assert uuid_bytes("GPU-0001") is None
    with pytest.raises(ValueError, match="16 bytes"):
        uuid_text(b"short")


def test_devices_have_uuids(fake: ctypes.CDLL) -> None:
    table = device_uuids(cuda_driver())
    assert [uuid_text(u) for u in table] == [fake_uuid(0), fake_uuid(1)]


def test_export_carries_the_device_uuid(fake: ctypes.CDLL) -> None:
    ref = export_cuda(alloc(fake, 256), (256,), "uint8")
    assert ref.device_uuid == fake_uuid(0)
    assert ref.device_id == 0
    with CudaBuffer(256, device_id=1) as buf:
        ref1 = export_cuda(buf.ptr, (256,), "uint8")
        # The driver knows the pointer's device; the device_id argument only
        # picks a context when none is current.
        assert (ref1.device_id, ref1.device_uuid) == (1, fake_uuid(1))
    assert buf.freed


def test_a_forged_uuid_is_refused(fake: ctypes.CDLL) -> None:
    ref = export_cuda(alloc(fake, 256), (256,), "uint8")
    for bad in ("GPU-nothex", 7, "GPU-66616b65-0000-0000-0000"):
        forged = dataclasses.replace(ref, device_uuid=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidDescriptorError, match="device_uuid"):
            open_cuda(forged)


@pytest.mark.parametrize(
    ("mask", "local"),
    [
        (None, 0),
        ("1,0", 1),
        ("1, 0", 1),
        ("0", 0),
        ("GPU-66616b65-0000-0000-0000-000000000001,GPU-66616b65-0000-0000-0000-000000000000", 1),
        ("GPU-66616b65-0000-0000-0000-000000000001,gpu-66616B65-0000-0000-0000-000000000000", 1),
    ],
)
def test_a_worker_with_another_mask_opens_on_the_same_gpu(
    fake: ctypes.CDLL, fake_path: str, mask: str | None, local: int
) -> None:
    ptr = alloc(fake, 64)
    _fill(ptr, bytes(range(64)))
    ref = export_cuda(ptr + 16, (32,), "uint8")
    assert ref.device_id == 0
    got_local, dl_id, physical, data = _open_in_child(fake_path, ref, mask)
    assert (got_local, dl_id) == (local, local)
    assert physical == 0  # the exporter's GPU, whatever this process calls it
    assert data == bytes(range(16, 48))


def test_a_gpu_of_ordinal_one_opens_as_ordinal_zero_under_a_mask(
    fake: ctypes.CDLL, fake_path: str
) -> None:
    with CudaBuffer(128, device_id=1) as buf:
        _fill(buf.ptr, b"\x07" * 128)
        ref = export_cuda(buf.ptr, (128,), "uint8")
        got_local, _, physical, data = _open_in_child(fake_path, ref, "1")
    assert (got_local, physical) == (0, 1)
    assert data == b"\x07" * 128


@pytest.mark.parametrize(
    "mask",
    [
        "1",
        "",
        "1,7,0",  # the driver stops at the first entry that names no device
        "1,1,0",  # ... or repeats one
        "GPU-66616b65-0000-0000-0000-000000000001",
        "GPU-66616b65-0000-0000-0000-000000000001,GPU-66616b65",  # ambiguous prefix
    ],
)
def test_a_worker_that_cannot_see_the_gpu_is_refused(
    fake: ctypes.CDLL, fake_path: str, mask: str
) -> None:
    ref = export_cuda(alloc(fake, 64), (64,), "uint8")
    result = run_child(
        _REFUSE,
        pickle.dumps(ref).hex(),
        "DeviceNotAvailableError",
        fake_path=fake_path,
        env={"CUDA_VISIBLE_DEVICES": mask},
    )
    assert result.returncode == 0, result.stderr
    assert "refused: DeviceNotAvailableError" in result.stdout
    assert fake_uuid(0) in result.stdout
    assert f"CUDA_VISIBLE_DEVICES='{mask}'" in result.stdout


def test_a_ref_without_uuid_opens_on_its_ordinal(fake: ctypes.CDLL, fake_path: str) -> None:
    ptr = alloc(fake, 64)
    _fill(ptr, b"\x01" * 64)
    old_style = dataclasses.replace(export_cuda(ptr, (64,), "uint8"), device_uuid="")
    assert _open_in_child(fake_path, old_style, None)[:3] == (0, 0, 0)


@pytest.mark.parametrize("kind", ["pool", "vmm", "managed"])
def test_memory_legacy_ipc_cannot_share_is_named(fake: ctypes.CDLL, kind: str) -> None:
    ptr = alloc(fake, 512, kind)
    assert memory_kind(ptr + 8) == kind
    with pytest.raises(UnshareableMemoryError) as info:
        export_cuda(ptr + 8, (16,), "float32")
    assert info.value.memory_kind == kind
    assert info.value.device == "cuda:0"
    assert kind in str(info.value)
    assert info.value.reason
    assert "cannot" in str(info.value)
    assert "export_cuda_copy" in (info.value.suggestion or "")
    assert isinstance(info.value, DeviceError)


def test_device_memory_is_device(fake: ctypes.CDLL) -> None:
    assert memory_kind(alloc(fake, 64)) == "device"
    buf = ctypes.create_string_buffer(64)
    with pytest.raises(DeviceError, match="not CUDA memory"):
        memory_kind(ctypes.addressof(buf))


def test_an_old_driver_without_the_legacy_attribute_still_exports(fake: ctypes.CDLL) -> None:
    fake.fakecuSetLegacyAttributeMissing(1)
    assert memory_kind(alloc(fake, 64)) == "device"
    export_cuda(alloc(fake, 64), (64,), "uint8")
    with pytest.raises(UnshareableMemoryError):
        export_cuda(alloc(fake, 64, "pool"), (64,), "uint8")


@pytest.mark.parametrize("kind", ["pool", "vmm", "managed", "device"])
def test_export_cuda_copy_shares_a_copy(fake: ctypes.CDLL, fake_path: str, kind: str) -> None:
    ptr = alloc(fake, 256, kind)
    _fill(ptr, bytes(range(256)))
    # A strided view (every other byte of 32 from byte 100): the copy keeps it.
    ref, buffer = export_cuda_copy(ptr + 100, (32,), "uint8", strides=(2,))
    assert ref.strides == (2,)
    assert ref.offset == 0
    assert ref.nbytes == 63
    with buffer:
        _fill(ptr, b"\0" * 256)  # the copy is a snapshot
        assert memory_kind(buffer.ptr) == "device"
        data = _open_in_child(fake_path, ref, None)[3]
    assert data[::2] == bytes(range(100, 164, 2))
    assert buffer.freed


def test_export_cuda_copy_with_negative_strides(fake: ctypes.CDLL) -> None:
    ptr = alloc(fake, 64, "pool")
    _fill(ptr, bytes(range(64)))
    ref, buffer = export_cuda_copy(ptr + 63, (64,), "uint8", strides=(-1,))
    with buffer:
        assert ref.offset == 63
        assert ref.extent() == (0, 64)
        assert ctypes.string_at(buffer.ptr, 64) == bytes(range(64))


# Pending work the producer queued lands only when it synchronises.
_PENDING = 0x5151


@pytest.mark.parametrize("how", ["stream", "synchronize", "function"])
def test_export_waits_for_pending_work(fake: ctypes.CDLL, fake_path: str, how: str) -> None:
    ptr = alloc(fake, 64)
    _fill(ptr, b"\0" * 64)
    assert fake.fakecuQueueFill(_PENDING, ptr, 9, 64) == 0
    if how == "stream":
        ref = export_cuda(ptr, (64,), "uint8", stream=_PENDING)
    elif how == "synchronize":
        ref = export_cuda(ptr, (64,), "uint8", synchronize=True)
    else:
        synchronize_cuda(0, _PENDING)
        ref = export_cuda(ptr, (64,), "uint8")
    assert fake.fakecuPendingCount() == 0
    assert _open_in_child(fake_path, ref, None)[3] == b"\x09" * 64


def test_without_synchronising_the_consumer_reads_stale_data(
    fake: ctypes.CDLL, fake_path: str
) -> None:
    # What the synchronisation above prevents (and proof that the double
    # really defers the work).
    ptr = alloc(fake, 64)
    _fill(ptr, b"\0" * 64)
    assert fake.fakecuQueueFill(_PENDING, ptr, 9, 64) == 0
    ref = export_cuda(ptr, (64,), "uint8")
    assert _open_in_child(fake_path, ref, None)[3] == b"\0" * 64
    synchronize_cuda(0, _PENDING + 1)  # another stream: still pending
    assert fake.fakecuPendingCount() == 1
    synchronize_cuda()
    assert fake.fakecuPendingCount() == 0


def test_synchronize_refuses_bad_streams(fake: ctypes.CDLL) -> None:
    for bad in (-1, 1 << 64, "1", 1.0):
        with pytest.raises(ValueError, match="stream"):
            synchronize_cuda(0, bad)  # type: ignore[arg-type]


def test_an_exhausted_handle_table_is_a_typed_error(fake: ctypes.CDLL, fake_path: str) -> None:
    refs = [export_cuda(alloc(fake, 64), (64,), "uint8") for _ in range(2)]
    script = (
        "import ctypes, pickle, sys\n"
        "from snakepit.errors import DeviceError\n"
        "from snakepit.zero_copy import open_cuda\n"
        "ctypes.CDLL(sys.argv[2]).fakecuSetMaxOpens(1)\n"
        "a, b = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "with open_cuda(a):\n"
        "    try:\n"
        "        open_cuda(b)\n"
        "    except DeviceError as exc:\n"
        "        print('refused:', type(exc).__name__, exc)\n"
    )
    result = run_child(script, pickle.dumps(refs).hex(), fake_path, fake_path=fake_path)
    assert result.returncode == 0, result.stderr
    assert "refused: DeviceError" in result.stdout
    assert "CUDA_ERROR_TOO_MANY_PEERS" in result.stdout


def test_a_view_beyond_the_opened_allocation_is_refused(fake: ctypes.CDLL, fake_path: str) -> None:
    ref = export_cuda(alloc(fake, 256), (8,), "float32")
    # Consistent on its own (the view fits the claimed nbytes), but the
    # handle's allocation is smaller than the claim.
    forged = dataclasses.replace(ref, nbytes=4096, offset=4000, shape=(16,))
    result = run_child(
        _REFUSE, pickle.dumps(forged).hex(), "InvalidDescriptorError", fake_path=fake_path
    )
    assert result.returncode == 0, result.stderr
    assert "refused: InvalidDescriptorError" in result.stdout
    assert "allocation has 256" in result.stdout
