"""The CUDA IPC cases of test_cuda_devices against the real driver (``gpu``: skipped without one).

They allocate with :class:`CudaBuffer` (``cuMemAlloc``) and check contents with
CuPy or torch when one is installed; memory kinds need CuPy (its async pool and
managed memory) or torch.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys

import pytest

from snakepit.errors import DeviceNotAvailableError, UnshareableMemoryError
from snakepit.zero_copy import (
    CudaBuffer,
    cuda_driver,
    export_cuda,
    export_cuda_copy,
    memory_kind,
    synchronize_cuda,
)
from snakepit.zero_copy._cuda import DRIVER_ENV
from snakepit.zero_copy._cuda_devices import device_uuid, device_uuids

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpus() -> int:
    try:
        count = cuda_driver("libcuda.so.1").device_count()
    except DeviceNotAvailableError as exc:
        pytest.skip(f"no real CUDA driver here: {exc.reason}")
    if count == 0:
        pytest.skip("the CUDA driver sees no GPU")
    return count


def _child(script: str, *args: str, mask: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (DRIVER_ENV, "CUDA_VISIBLE_DEVICES")}
    if mask is not None:
        env["CUDA_VISIBLE_DEVICES"] = mask
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_uuids_match_nvml(gpus: int) -> None:
    pynvml = pytest.importorskip("pynvml")
    pynvml.nvmlInit()
    try:
        names = set()
        for i in range(pynvml.nvmlDeviceGetCount()):
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.add(uuid.decode() if isinstance(uuid, bytes) else uuid)
    finally:
        pynvml.nvmlShutdown()
    driver = cuda_driver("libcuda.so.1")
    assert len(device_uuids(driver)) == gpus
    assert device_uuid(0, driver) in names


_OPEN = """
import pickle, sys
from snakepit.zero_copy import open_cuda
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
with open_cuda(ref) as tensor:
    print(tensor.device_id, tensor.__dlpack_device__())
"""


def test_open_by_uuid_under_a_mask(gpus: int) -> None:
    driver = cuda_driver("libcuda.so.1")
    with CudaBuffer(1 << 20, 0, driver) as buf:
        ref = export_cuda(buf.ptr + 4096, (1024,), "float32", driver=driver, synchronize=True)
        assert ref.offset == 4096
        assert ref.device_uuid == device_uuid(0, driver)
        result = _child(_OPEN, pickle.dumps(ref).hex(), mask=ref.device_uuid)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == "0"
        hidden = _child(
            "import pickle, sys\n"
            "from snakepit.errors import DeviceNotAvailableError\n"
            "from snakepit.zero_copy import open_cuda\n"
            "try:\n"
            "    open_cuda(pickle.loads(bytes.fromhex(sys.argv[1])))\n"
            "except DeviceNotAvailableError as exc:\n"
            "    print('refused', exc.device)\n",  # no device at all: cuInit fails
            pickle.dumps(ref).hex(),
            mask="",
        )
        assert hidden.returncode == 0, hidden.stderr
        assert hidden.stdout.split() == ["refused", ref.device_uuid]


def test_memory_kinds_with_cupy(gpus: int) -> None:
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed")
    import cupy  # type: ignore[import-not-found]

    driver = cuda_driver("libcuda.so.1")
    plain = cupy.cuda.memory.alloc(1 << 20)
    assert memory_kind(plain.ptr, driver=driver) == "device"
    managed = cupy.cuda.malloc_managed(1 << 20)
    assert memory_kind(managed.ptr, driver=driver) == "managed"
    pool = cupy.cuda.MemoryAsyncPool()
    chunk = pool.malloc(1 << 20)
    assert memory_kind(chunk.ptr, driver=driver) == "pool"
    with pytest.raises(UnshareableMemoryError) as info:
        export_cuda(chunk.ptr, (1 << 18,), "float32", driver=driver)
    assert info.value.memory_kind == "pool"
    cupy.cuda.runtime.memset(chunk.ptr, 7, 1 << 20)
    ref, buffer = export_cuda_copy(chunk.ptr, (1 << 20,), "uint8", driver=driver)
    with buffer:
        host = cupy.asnumpy(
            cupy.ndarray(
                (1 << 20,),
                cupy.uint8,
                cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(buffer.ptr, 1 << 20, None), 0),
            )
        )
        assert (host == 7).all()
        assert memory_kind(buffer.ptr, driver=driver) == "device"
        assert ref.nbytes == 1 << 20
    synchronize_cuda(0, None, driver)


_TORCH_CHILD = """
import pickle, sys
import torch
from snakepit.zero_copy import open_cuda
ref = pickle.loads(bytes.fromhex(sys.argv[1]))
with open_cuda(ref) as tensor:
    view = torch.from_dlpack(tensor)
    assert view.device.type == "cuda", view.device
    print(view.sum().item())
    view.mul_(-1)
    torch.cuda.synchronize()
"""


def test_torch_cuda_tensors_through_dlpack_and_ipc(gpus: int) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    import snakepit
    from snakepit.zero_copy import CudaArray

    t = torch.arange(1024, device="cuda", dtype=torch.float32)
    array = snakepit.from_dlpack(t[16:])  # an interior pointer of torch's block
    assert isinstance(array, CudaArray)
    assert array.ptr == t[16:].data_ptr()
    back = torch.from_dlpack(array)
    assert back.data_ptr() == array.ptr
    copied = torch.from_dlpack(array.__dlpack__(max_version=(1, 0), copy=True))
    assert copied.data_ptr() != array.ptr
    assert torch.equal(copied, t[16:])
    driver = cuda_driver("libcuda.so.1")
    assert memory_kind(array.ptr, driver=driver) == "device"  # torch's default allocator
    ref = export_cuda(
        array.ptr,
        array.shape,
        array.dtype,
        array.strides,
        array.device_id,
        driver=driver,
        synchronize=True,
    )
    result = _child(_TORCH_CHILD, pickle.dumps(ref).hex())
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) == float(sum(range(16, 1024)))
    assert t[16].item() == -16.0
