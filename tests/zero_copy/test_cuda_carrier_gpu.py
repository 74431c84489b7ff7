"""The carrier cases of test_cuda_carrier.py with torch CUDA tensors on the real driver.

Marked ``gpu``: skipped, with the reason, where torch has no CUDA device.
``bench/gpu/run_on_device.sh`` runs them on a lent GPU.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import snakepit
from snakepit._wire import _cuda_carrier
from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SerializationError,
    WorkerCrashedError,
)
from snakepit.zero_copy import _cuda_leases, _ref, export_cuda

from . import _torch_cuda_tasks as tasks

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
COUNT = 1 << 20  # 4 MiB of float32: above the default threshold


def _wait(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def torch() -> Any:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU here")
    return torch


@pytest.fixture(scope="module")
def pool(torch: Any) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1, device="cuda:0") as pool:
        yield pool


@pytest.fixture(autouse=True)
def nothing_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "torch" in request.fixturenames:
        gc.collect()
        assert _wait(lambda: _cuda_leases.outstanding() == 0), "exports left held"
        assert _cuda_leases.open_count() == 0


def test_a_tensor_arrives_as_a_torch_tensor_on_the_same_gpu(
    torch: Any, pool: snakepit.Pool
) -> None:
    sent = torch.arange(COUNT, dtype=torch.float32, device="cuda")
    kind, device, total, opens = pool.call(tasks.describe, sent)
    assert kind == "torch.Tensor"
    assert device == "cuda:0"
    assert total == float(sent.double().sum().item())
    assert opens == 1
    assert pool.call(tasks.open_mappings) == 0


def test_a_write_in_the_worker_is_seen_by_the_caller(torch: Any, pool: snakepit.Pool) -> None:
    sent = torch.ones(COUNT, device="cuda")
    pool.call(tasks.negate, sent)
    assert float(sent.sum().item()) == -COUNT


def test_pending_work_lands_before_the_worker_reads(torch: Any, pool: snakepit.Pool) -> None:
    sent = torch.zeros(COUNT, device="cuda")
    for _ in range(50):  # queued, not finished, when the call is made
        sent.add_(1.0)
    assert pool.call(tasks.describe, sent)[2] == 50.0 * COUNT


def test_an_interior_view_travels_as_handle_plus_offset(torch: Any, pool: snakepit.Pool) -> None:
    whole = torch.arange(4 * COUNT, dtype=torch.float32, device="cuda")
    part = whole[COUNT : 2 * COUNT]
    assert pool.call(tasks.describe, part)[2] == float(part.double().sum().item())
    pool.call(tasks.negate, part)
    assert float(whole[COUNT - 1].item()) == COUNT - 1
    assert float(whole[COUNT].item()) == -COUNT


def test_a_result_is_a_torch_tensor_held_until_dropped(torch: Any, pool: snakepit.Pool) -> None:
    result = pool.call(tasks.make, COUNT, 2.5)
    assert isinstance(result, torch.Tensor)
    assert result.is_cuda
    assert float(result.sum().item()) == 2.5 * COUNT
    assert pool.call(tasks.outstanding) == 1
    del result
    gc.collect()
    assert _wait(lambda: pool.call(tasks.outstanding) == 0)


def test_a_crashed_consumer_releases_what_it_held(torch: Any) -> None:
    with snakepit.Pool(1, device="cuda:0") as pool:
        sent = torch.ones(COUNT, device="cuda")
        with pytest.raises(WorkerCrashedError):
            pool.call(tasks.keep_and_die, sent)
        assert _wait(lambda: _cuda_leases.outstanding() == 0)
        assert pool.call(tasks.keep, sent) == 1  # a token reference in the worker's ledger
        with pytest.raises(WorkerCrashedError):
            pool.call(tasks.die)
        assert _wait(lambda: _cuda_leases.outstanding() == 0)
        assert pool.call(tasks.open_mappings) == 0


_PRODUCER = """
import pickle, sys, torch
from snakepit.zero_copy import export_cuda
x = torch.ones(1 << 20, device="cuda")
torch.cuda.synchronize()
sys.stdout.write(pickle.dumps(export_cuda(x.data_ptr(), tuple(x.shape), "float32")).hex())
"""


def test_a_handle_of_a_producer_that_exited_is_refused(torch: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PRODUCER],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "SNAKEPIT_CUDA_DRIVER"},
    )
    ref = pickle.loads(bytes.fromhex(done.stdout))
    with pytest.raises((DeviceError, InvalidDescriptorError)):
        _cuda_leases.open_view(ref)


def test_a_worker_that_cannot_see_the_gpu_says_so(torch: Any) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs (a worker pinned to the other one)")
    sent = torch.ones(COUNT, device="cuda:0")
    with snakepit.Pool(1, device="cuda:1") as other, pytest.raises(DeviceNotAvailableError):
        other.call(tasks.describe, sent)


class _Forged:
    def __init__(self, ref: Any, token: Any, **change: Any) -> None:
        values = {name: getattr(ref, name) for name in _cuda_carrier._fields()}
        values.update(change)
        self.descriptor = (
            _cuda_carrier.TAG,
            False,
            tuple(values.values()),
            "torch",
            _ref.fields_of(token),
        )

    def __reduce__(self) -> Any:
        return (_cuda_carrier._shared, self.descriptor)


def test_a_forged_handle_is_refused_with_a_typed_error(torch: Any, pool: snakepit.Pool) -> None:
    sent = torch.ones(COUNT, device="cuda")
    torch.cuda.synchronize()
    ref = export_cuda(sent.data_ptr(), tuple(sent.shape), "float32")
    token, pin = _cuda_leases.lease(sent)
    try:
        with pytest.raises(SerializationError, match="rejected by the driver"):
            pool.call(tasks.describe, _Forged(ref, token, handle=os.urandom(64)))
        assert pool.call(tasks.open_mappings) == 0
    finally:
        del pin, token


def test_many_allocations_open_or_fail_typed(torch: Any, pool: snakepit.Pool) -> None:
    # The real driver's table has no documented size: whatever it is, the
    # outcome is all opened or a typed DeviceError, never a crash.
    buffers = [torch.ones(COUNT, device="cuda") for _ in range(64)]
    handles = {export_cuda(b.data_ptr(), tuple(b.shape), "float32").handle for b in buffers}
    failure: DeviceError | None = None
    try:
        opened = pool.call(tasks.opened, *buffers)
    except DeviceError as exc:
        failure = exc
    if failure is None:
        assert opened == len(handles)  # torch's allocator packs tensors into shared segments
    else:
        assert "peer allocations are open" in str(failure)
    del buffers
