"""CUDA arrays through pool calls by IPC (docs/zero-copy.md, GPU), against the driver double.

The double (csrc/tests/fake_cuda.c) hands real IPC handles across real
processes over host shared memory, and :mod:`._fake_cuda_array` is an array
library on it, so the whole path runs without a GPU: export, send, open,
write, close, release, crashes and every failure. ``test_cuda_gpu.py`` runs
the same cases with torch on a real GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import pickle
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import zero_copy
from snakepit._wire import _cuda_carrier, codec
from snakepit.errors import (
    DeviceError,
    DeviceNotAvailableError,
    InvalidDescriptorError,
    SerializationError,
    WorkerCrashedError,
)
from snakepit.zero_copy import CudaIPCTensor, _cuda_leases
from snakepit.zero_copy._cuda import DRIVER_ENV

from . import _fake_cuda_array as double
from ._cuda_double import fake_uuid

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "csrc" / "build" / "libfakecuda.so"
THRESHOLD = 4096
COUNT = 2048  # 8 KiB of float32: above THRESHOLD


def _wait(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        gc.collect()
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def fake_path() -> Iterator[str]:
    if not FAKE.exists():
        subprocess.run(["make", "-s", "-C", str(ROOT / "csrc"), "fakecuda"], check=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DRIVER_ENV, str(FAKE))
        before = zero_copy.threshold_bytes()
        zero_copy.configure(threshold_bytes=THRESHOLD)
        try:
            yield str(FAKE)
        finally:
            zero_copy.configure(threshold_bytes=before)


def _unlink_dead_segments() -> None:
    """Workers end without running the double's destructor: drop their segments."""
    for name in os.listdir("/dev/shm"):
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "fakecuda" and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"/dev/shm/{name}")
            except PermissionError:
                continue


@pytest.fixture(scope="module", autouse=True)
def segments() -> Iterator[None]:
    yield
    _unlink_dead_segments()


@pytest.fixture(scope="module")
def gpus(fake_path: str) -> Iterator[None]:
    """Hardware detection sees the double's two GPUs, so pools pin workers to them."""
    from snakepit.hardware import _detect
    from tests.hardware._doubles import NvmlDouble, h100, machine

    found = [h100(fake_uuid(0)), h100(fake_uuid(1))]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        detected = _detect.detect(machine(load_nvml=lambda: NvmlDouble(gpus=found)))
        patch.setattr(_detect, "_cache", detected)
        yield


@pytest.fixture(scope="module")
def pool(gpus: None) -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1, device="cuda:0") as pool:
        yield pool


@pytest.fixture(autouse=True)
def clean(fake_path: str) -> Iterator[ctypes.CDLL]:
    lib = ctypes.CDLL(fake_path)
    yield lib
    gc.collect()
    assert _wait(lambda: _cuda_leases.outstanding() == 0), "exports left held"
    assert lib.fakecuOpenCount() == 0, "mappings left open"
    lib.fakecuReset()  # a fresh fake segment: its allocation slots are never reused


def test_an_argument_arrives_as_a_cuda_object_on_the_same_memory(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT, 1.0)
    kind, total, device, opens = pool.call(double.describe, sent)
    assert kind == "snakepit.zero_copy._cuda.CudaIPCTensor"
    assert total == float(np.arange(COUNT).sum() + COUNT)
    assert device == (2, 0)
    assert opens == 1
    assert pool.call(double.open_mappings) == 0  # closed once the call is done


def test_a_write_in_the_worker_is_seen_by_the_caller(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT, 1.0)
    pool.call(double.negate, sent)
    assert np.array_equal(sent.host(), -(np.arange(COUNT, dtype=np.float32) + 1))


def test_an_interior_view_travels_as_handle_plus_offset(pool: snakepit.Pool) -> None:
    whole = double.filled(4 * COUNT)
    part = whole.part(COUNT, COUNT)
    _, total, _, _ = pool.call(double.describe, part)
    assert total == float(np.arange(COUNT, 2 * COUNT).sum())
    pool.call(double.negate, part)
    assert whole.host()[COUNT - 1] == COUNT - 1
    assert whole.host()[COUNT] == -COUNT


def test_one_allocation_is_opened_once_per_process(pool: snakepit.Pool) -> None:
    whole = double.filled(4 * COUNT)
    first, second = whole.part(0, COUNT), whole.part(2 * COUNT, COUNT)
    _, opened_before = pool.call(double.twice, first, first)
    open_now, opened = pool.call(double.twice, first, second)
    assert open_now == 1
    assert opened == opened_before + 1


def test_the_producer_keeps_memory_until_the_worker_lets_go(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT, 3.0)
    alive = weakref.ref(sent)
    assert pool.call(double.keep, sent) == 1
    del sent
    gc.collect()
    time.sleep(3 * _cuda_leases.SWEEP_SECONDS)
    assert alive() is not None, "freed while the worker still holds it"
    assert pool.call(double.describe, alive())[1] == float(np.arange(COUNT).sum() + 3 * COUNT)
    assert pool.call(double.drop) == 0
    assert _wait(lambda: alive() is None), "not freed after the worker let go"


def test_a_crashed_consumer_releases_what_it_held(gpus: None) -> None:
    with snakepit.Pool(1, device="cuda:0") as pool:
        sent = double.filled(COUNT)
        alive = weakref.ref(sent)
        with pytest.raises(WorkerCrashedError):
            pool.call(double.crash, sent)  # dies during the call: the call's pin goes
        assert _wait(lambda: _cuda_leases.outstanding() == 0)
        assert pool.call(double.keep, sent) == 1  # kept: a token reference in its ledger
        del sent
        with pytest.raises(WorkerCrashedError):
            pool.call(double.die)
        # The supervisor drops the dead worker's token reference: freed.
        assert _wait(lambda: alive() is None), "a dead worker's hold was never released"
        assert pool.call(double.open_mappings) == 0


def test_pending_work_of_the_producer_lands_before_the_worker_reads(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT)
    sent.stream = 5
    double.queue_fill(sent, 0, 5)  # zero every byte, on stream 5, not landed yet
    assert sent.host().sum() != 0
    assert pool.call(double.describe, sent)[1] == 0.0  # exported after stream 5 synchronised


def test_the_workers_pending_writes_land_before_it_replies(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT, 1.0)
    pool.call(double.fill_pending, sent, 0)
    assert sent.host().sum() == 0.0


def test_an_argument_sent_back_is_the_callers_own_object(pool: snakepit.Pool) -> None:
    sent = double.filled(COUNT, 1.0)
    assert pool.call(double.identity, sent) is sent
    back = pool.call(double.tail, sent, 16)
    assert type(back) is _cuda_carrier.LocalCudaView
    assert back.__dlpack_device__() == (2, 0)
    assert np.array_equal(double.host_view(back), sent.host()[16:])
    double.host_view(back)[0] = -1.0  # the same memory
    assert sent.host()[16] == -1.0
    del back


def test_a_result_lives_in_the_worker_until_the_caller_drops_it(pool: snakepit.Pool) -> None:
    result = pool.call(double.make, COUNT, 5.0)
    assert isinstance(result, CudaIPCTensor)
    assert result.__dlpack_device__() == (2, 0)
    assert np.array_equal(double.host_view(result), np.arange(COUNT, dtype=np.float32) + 5)
    assert pool.call(double.outstanding) == 1
    double.host_view(result)[0] = 42.0  # the caller writes into the worker's memory
    del result
    gc.collect()
    assert _wait(lambda: pool.call(double.outstanding) == 0)


def test_a_caller_that_closes_a_result_releases_it_at_once(pool: snakepit.Pool) -> None:
    result = pool.call(double.make, COUNT, 0.0)
    result.close()
    assert result.closed
    assert _wait(lambda: pool.call(double.outstanding) == 0)
    del result


def test_a_small_array_is_pickled_as_its_type_defines(fake_path: str) -> None:
    small = double.filled(8, 2.0)
    copy = codec.decode(codec.encode(small).blob)  # the double pickles by copy, as torch does
    assert type(copy) is double.FakeCudaArray
    assert copy.ptr != small.ptr
    assert np.array_equal(copy.host(), small.host())
    assert _cuda_leases.outstanding() == 0


def test_sent_to_itself_an_object_comes_back_as_itself(fake_path: str) -> None:
    sent = double.filled(COUNT)
    encoded = codec.encode([sent])
    assert codec.decode(encoded.blob) == [sent]
    del encoded


class _Forged:
    """Pickles to a CUDA descriptor with some fields replaced."""

    def __init__(self, ref: Any, token: np.ndarray[Any, Any], **change: Any) -> None:
        values = {name: getattr(ref, name) for name in _cuda_carrier._fields()}
        values.update(change)
        fields = zero_copy._ref.fields_of(token)
        self.descriptor = (_cuda_carrier.TAG, False, tuple(values.values()), "cuda", fields)
        self.token = token

    def __reduce__(self) -> Any:
        return (_cuda_carrier._shared, self.descriptor)


@pytest.fixture
def exported() -> Iterator[tuple[Any, np.ndarray[Any, Any]]]:
    sent = double.filled(COUNT)
    ref = zero_copy.export_cuda(sent.ptr, sent.shape, "float32")
    token, pin = _cuda_leases.lease(sent)
    yield ref, token
    del pin, token


def test_a_forged_handle_is_refused_with_a_typed_error(
    pool: snakepit.Pool, exported: tuple[Any, np.ndarray[Any, Any]]
) -> None:
    ref, token = exported
    forged = _Forged(ref, token, handle=bytes(64))
    with pytest.raises(SerializationError) as info:
        pool.call(double.describe, forged)
    assert info.value.direction == "decode"
    assert "rejected by the driver" in str(info.value)
    oversized = _Forged(ref, token, nbytes=ref.nbytes * 4, shape=(COUNT * 4,))
    with pytest.raises(SerializationError, match="claims an allocation"):
        pool.call(double.describe, oversized)
    malformed = _Forged(ref, token, offset=-1)
    with pytest.raises(SerializationError, match="offset"):
        pool.call(double.describe, malformed)
    assert pool.call(double.open_mappings) == 0


def test_a_worker_that_cannot_see_the_device_says_so(gpus: None) -> None:
    sent = double.filled(COUNT)  # on physical GPU 0, which the worker of cuda:1 cannot see
    with snakepit.Pool(1, device="cuda:1") as other:
        with pytest.raises(DeviceNotAvailableError, match="not visible") as info:
            other.call(double.describe, sent)
        assert fake_uuid(0) in str(info.value)
        assert other.call(double.open_mappings) == 0
        # Memory of the GPU it has arrives, under its own ordinal (0 there, 1 here).
        there = double.FakeCudaArray((COUNT,), device=1)
        assert other.call(double.describe, there)[2] == (2, 0)


def test_an_exhausted_handle_table_is_a_device_error(pool: snakepit.Pool) -> None:
    pool.call(double.set_max_opens, 2)
    try:
        sent = [double.filled(COUNT, float(i)) for i in range(3)]
        with pytest.raises(DeviceError, match="2 peer allocations are open") as info:
            pool.call(double.opened, *sent)
        assert not isinstance(info.value, InvalidDescriptorError)
        assert pool.call(double.open_mappings) == 0  # the two it opened were closed
        assert pool.call(double.opened, *sent[:2]) == 2  # two fit
    finally:
        pool.call(double.set_max_opens, 0)


_PRODUCER = """
import pickle, sys
sys.path.insert(0, sys.argv[1])
from tests.zero_copy import _fake_cuda_array as double
from snakepit import zero_copy
array = double.filled(1024)
sys.stdout.write(pickle.dumps(zero_copy.export_cuda(array.ptr, array.shape, "float32")).hex())
"""


def test_a_handle_of_a_producer_that_exited_is_refused(fake_path: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PRODUCER, str(ROOT)],
        env={**os.environ, DRIVER_ENV: fake_path},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ref = pickle.loads(bytes.fromhex(done.stdout))
    with pytest.raises(InvalidDescriptorError, match="rejected by the driver"):
        _cuda_leases.open_view(ref)


def test_drain_waits_for_holders_then_gives_up(fake_path: str) -> None:
    sent = double.filled(COUNT)
    token, pin = _cuda_leases.lease(sent)
    fields = zero_copy._ref.fields_of(token)
    assert fields is not None
    zero_copy._mapping.add_ref(*fields[:3])  # a consumer's hold
    del pin, token, sent
    assert not _cuda_leases.drain(0.1)
    zero_copy._mapping.drop_ref(*fields[:3])
    assert _cuda_leases.drain(5.0)


def test_memory_ipc_cannot_share_is_copied_once_with_a_warning_and_an_event(
    pool: snakepit.Pool,
) -> None:
    from snakepit import telemetry
    from snakepit.telemetry._events import CUDA_COPY

    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
    telemetry.attach("test-cuda-copy", CUDA_COPY, lambda e, m, md, c: seen.append((m, md)))
    _cuda_carrier._warned.clear()
    try:
        sent = double.FakeCudaArray((COUNT,), kind="pool")
        sent.host()[:] = 2.0
        with pytest.warns(RuntimeWarning, match="pool memory was copied once"):
            assert pool.call(double.describe, sent)[1] == 2.0 * COUNT
        pool.call(double.negate, sent)  # writes the copy, not the sender's memory
        assert float(sent.host().sum()) == 2.0 * COUNT
    finally:
        telemetry.detach("test-cuda-copy")
    assert len(seen) == 2
    assert seen[0][0] == {"bytes": 4 * COUNT}
    assert seen[0][1]["memory_kind"] == "pool"
    assert seen[0][1]["device"] == "cuda:0"


def test_an_export_lives_while_pinned_or_held(fake_path: str) -> None:
    sent = double.filled(COUNT)
    alive = weakref.ref(sent)
    token, pin = _cuda_leases.lease(sent)
    del sent
    _cuda_leases.sweep()  # a call's arguments: the worker borrows them, the pin holds them
    assert alive() is not None
    fields = zero_copy._ref.fields_of(token)
    assert fields is not None
    zero_copy._mapping.add_ref(*fields[:3])  # a consumer keeps it past the call
    del pin, token
    _cuda_leases.sweep()
    assert alive() is not None
    zero_copy._mapping.drop_ref(*fields[:3])
    assert _wait(lambda: alive() is None)


def test_a_dlpack_only_cuda_producer_travels_too(pool: snakepit.Pool) -> None:
    from ._dlpack_doubles import CudaProducer

    memory = double.filled(COUNT, 1.0)
    producer = CudaProducer(memory.ptr, (COUNT,), "float32")
    kind, total, device, _ = pool.call(double.describe, producer)
    assert kind == "snakepit.zero_copy._cuda.CudaIPCTensor"
    assert total == float(np.arange(COUNT).sum() + COUNT)
    assert device == (2, 0)
    pool.call(double.negate, producer)
    assert memory.host()[1] == -2.0


def test_a_worker_that_ends_waits_for_the_holders_of_its_results(gpus: None) -> None:
    import threading

    import psutil

    pool = snakepit.Pool(1, device="cuda:0")
    try:
        result = pool.call(double.make, COUNT, 1.0)
        worker = psutil.Process(pool.call("os:getpid"))
        stopping = threading.Thread(target=pool.shutdown)
        stopping.start()
        time.sleep(0.3)
        assert worker.is_running(), "the worker ended under the caller's result"
        assert float(double.host_view(result)[0]) == 1.0  # still readable
        del result
        gc.collect()
        stopping.join(30)
        assert not stopping.is_alive()
        assert _wait(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE)
    finally:
        pool.shutdown(wait=False)
