"""PyTorch CPU tensors as call arguments: snakepit.Pool against ProcessPoolExecutor.

Both executors (1 worker each, torch imported in both) are created once per
module and warmed up; the worker reads one element of a 100 MiB float32
tensor. With torch imported, ProcessPoolExecutor does not pickle tensor data:
torch's reducers move the tensor's storage into shared memory (one copy, the
first time) and pass a file descriptor. So two cases, same run:

- ``torch-fresh-100MiB``: a new tensor every round (made outside the timing).
  snakepit copies it once into its arena; the peer's reducer moves it once
  into torch's shared memory. Target: snakepit no slower than the peer (3x faster here).
- ``torch-shared-100MiB``: the same tensor every round, already shared
  (``snakepit.share_tensor`` / ``Tensor.share_memory_()``): no copy on either
  side. Information only.

The peer uses the ``spawn`` start method: forking this process, which runs
snakepit's supervisor threads, is unsafe.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import snakepit

torch = pytest.importorskip("torch")

MIB = 1 << 20
MARK = 42.0
SPAWN = multiprocessing.get_context("spawn")


def first_element(tensor: Any) -> float:
    """Read one element: the cost is the transfer, not the work."""
    return float(tensor[0])


def _fresh() -> tuple[tuple[Any, ...], dict[str, Any]]:
    tensor = torch.empty(100 * MIB // 4)
    tensor[0] = MARK
    return (first_element, tensor), {}


def _tag(benchmark: Any, case: str, impl: str) -> None:
    benchmark.group = f"pool-{case}"
    benchmark.extra_info.update(case=case, impl=impl, nbytes=100 * MIB)


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as executor:
        assert executor.call(first_element, torch.full((4,), MARK)) == MARK
        yield executor


@pytest.fixture(scope="module")
def peer() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as executor:
        assert executor.submit(first_element, torch.full((4,), MARK)).result() == MARK
        yield executor


def test_torch_fresh_snakepit(benchmark: Any, pool: snakepit.Pool) -> None:
    _tag(benchmark, "torch-fresh-100MiB", "snakepit")
    result = benchmark.pedantic(pool.call, setup=_fresh, rounds=10, warmup_rounds=1)
    assert result == MARK


def test_torch_fresh_peer(benchmark: Any, peer: ProcessPoolExecutor) -> None:
    _tag(benchmark, "torch-fresh-100MiB", "peer")

    def call(fn: Any, tensor: Any) -> Any:
        return peer.submit(fn, tensor).result()

    result = benchmark.pedantic(call, setup=_fresh, rounds=10, warmup_rounds=1)
    assert result == MARK


def test_torch_shared_snakepit(benchmark: Any, pool: snakepit.Pool) -> None:
    _tag(benchmark, "torch-shared-100MiB", "snakepit")
    (_, tensor), _ = _fresh()
    shared = snakepit.share_tensor(tensor)
    result = benchmark.pedantic(pool.call, args=(first_element, shared), rounds=50)
    assert result == MARK


def test_torch_shared_peer(benchmark: Any, peer: ProcessPoolExecutor) -> None:
    _tag(benchmark, "torch-shared-100MiB", "peer")
    (_, tensor), _ = _fresh()
    tensor.share_memory_()

    def call() -> Any:
        return peer.submit(first_element, tensor).result()

    result = benchmark.pedantic(call, rounds=50)
    assert result == MARK
