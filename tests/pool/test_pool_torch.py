"""PyTorch CPU tensors as pool arguments and results go through shared memory."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

import snakepit
from snakepit._wire import codec
from snakepit.errors import InvalidDescriptorError, SerializationError
from snakepit.zero_copy import _torch

from . import _torch_tasks

torch = pytest.importorskip("torch")

MIB = 1 << 20


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as executor:
        yield executor


def test_a_large_tensor_travels_as_a_descriptor_not_as_bytes() -> None:
    tensor = torch.arange(4 * MIB // 4, dtype=torch.float32)
    encoded = codec.encode(tensor)
    assert len(encoded.payload) < 1024  # 4 MiB of data, a few hundred bytes sent
    decoded = codec.decode(encoded.blob, keep=True)
    assert type(decoded) is torch.Tensor
    assert torch.equal(decoded, tensor)
    # The receiver's tensor lies in shared memory: writing it shows in the copy we keep.
    (shared,) = encoded.keepalive
    decoded[0] = -5.0
    assert shared[0] == -5.0


@pytest.mark.parametrize(
    "dtype",
    ["float16", "bfloat16", "float32", "float64", "complex64", "int8", "int64", "uint8", "bool"],
)
def test_every_dtype_arrives_intact(pool: snakepit.Pool, dtype: str) -> None:
    torch_dtype = getattr(torch, dtype)
    n = 2 * MIB // torch.empty(0, dtype=torch_dtype).element_size()
    source = (torch.arange(n) % 7).to(torch_dtype)
    kind, arrived_dtype, shape, total = pool.call(_torch_tasks.describe, source)
    assert (kind, arrived_dtype, shape) == ("Tensor", str(torch_dtype), (n,))
    values = torch.view_as_real(source) if source.is_complex() else source
    assert total == pytest.approx(float(values.double().sum()))


def test_non_contiguous_and_conjugated_tensors_arrive_with_their_values(
    pool: snakepit.Pool,
) -> None:
    matrix = torch.randn(1024, 512).t()  # transposed view
    _, _, shape, total = pool.call(_torch_tasks.describe, matrix)
    assert shape == (512, 1024)
    assert total == pytest.approx(float(matrix.double().sum()), rel=1e-6)
    z = torch.randn(256 * 1024, dtype=torch.complex64).conj()
    encoded = codec.encode(z)  # the sender keeps the block alive until decoded
    assert torch.equal(codec.decode(encoded.blob, keep=True), z.resolve_conj())


def test_results_come_back_as_tensors_in_shared_memory(pool: snakepit.Pool) -> None:
    result = pool.call(_torch_tasks.ones, 2 * MIB, "float32")
    assert type(result) is torch.Tensor
    assert result.shape == (2 * MIB,)
    assert float(result.sum()) == 2 * MIB
    result += 1  # writable, and ours to keep
    assert float(result[0]) == 2.0


def test_a_kept_tensor_argument_stays_valid_after_the_call(pool: snakepit.Pool) -> None:
    source = torch.full((MIB,), 3.0)
    pool.call(_torch_tasks.keep, source)
    del source
    gc.collect()
    assert pool.call(_torch_tasks.kept_sum) == pytest.approx(3.0 * MIB)


def test_in_place_changes_in_the_worker_stay_in_the_workers_copy(pool: snakepit.Pool) -> None:
    source = torch.ones(MIB)
    assert pool.call(_torch_tasks.scale_in_place, source, 2.0) == 2.0 * MIB
    # Unlike a snakepit array, a torch tensor is copied once into shared memory.
    assert float(source.sum()) == MIB


def test_small_grad_and_sparse_tensors_use_torchs_own_pickling(pool: snakepit.Pool) -> None:
    small = torch.arange(10.0)
    assert _torch.shared_copy(small, threshold=MIB) is None
    needs_grad = torch.ones(MIB, requires_grad=True)
    assert _torch.shared_copy(needs_grad, threshold=MIB) is None
    sparse = torch.eye(1024).to_sparse()
    assert _torch.shared_copy(sparse, threshold=0) is None
    kind, _, shape, total = pool.call(_torch_tasks.describe, small)
    assert (kind, shape, total) == ("Tensor", (10,), 45.0)
    encoded = codec.encode(needs_grad)
    assert codec.decode(encoded.blob, keep=True).requires_grad


def test_forged_torch_descriptors_are_refused() -> None:
    tensor = torch.ones(MIB)
    encoded = codec.encode(tensor)
    (shared,) = encoded.keepalive
    with pytest.raises(InvalidDescriptorError):
        _torch.tensor_over(shared, "float8_e4m3fn")
    with pytest.raises(InvalidDescriptorError):
        _torch.tensor_over(shared, "int64")  # dtype does not match the memory
    with pytest.raises(InvalidDescriptorError):
        _torch.tensor_over(shared, 42)
    forged = encoded.payload.replace(b"float32", b"float99")
    with pytest.raises((SerializationError, InvalidDescriptorError)):
        codec.decode(forged, keep=True)


def test_encoding_never_imports_torch() -> None:
    script = (
        "import sys, numpy as np, snakepit\n"
        "from snakepit._wire import codec\n"
        "encoded = codec.encode([np.ones(1 << 20), {'a': 1}])\n"
        "codec.decode(encoded.blob, keep=True)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_a_shared_tensor_and_its_views_travel_without_a_copy(pool: snakepit.Pool) -> None:
    shared = snakepit.share_tensor(torch.ones(MIB))
    assert snakepit.share_tensor(shared) is shared
    # The worker's in-place change shows here: it worked on our memory.
    assert pool.call(_torch_tasks.scale_in_place, shared, 2.0) == 2.0 * MIB
    assert float(shared[0]) == 2.0
    matrix = shared.view(1024, 1024)
    pool.call(_torch_tasks.scale_in_place, matrix[:, 10:20].t(), 0.5)
    assert float(matrix[0, 10]) == 1.0
    assert float(matrix[0, 9]) == 2.0
    assert float(matrix[1023, 19]) == 1.0


def test_a_result_tensor_goes_back_without_a_copy(pool: snakepit.Pool) -> None:
    result = pool.call(_torch_tasks.ones, MIB, "float32")
    encoded = codec.encode(result)
    (array,) = encoded.keepalive
    assert array.__array_interface__["data"][0] == result.data_ptr()
    assert pool.call(_torch_tasks.scale_in_place, result, 3.0) == 3.0 * MIB
    assert float(result[0]) == 3.0


def test_share_tensor_refuses_what_cannot_be_shared() -> None:
    with pytest.raises(TypeError):
        snakepit.share_tensor(torch.ones(3, requires_grad=True))
    with pytest.raises(TypeError):
        snakepit.share_tensor([1.0, 2.0])
    small = snakepit.share_tensor(torch.arange(3))
    assert small.tolist() == [0, 1, 2]
