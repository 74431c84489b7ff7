"""The Ray data plane's pure parts (no ray needed): read-only hand-off in a
host, adopted results, CUDA references refused for another node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit._wire import codec
from snakepit.backends import _ray_data
from snakepit.backends._ray_hosts import Host, RayCall
from snakepit.errors import DeviceMismatchError
from snakepit.zero_copy import GPUTensorRef, _numpy


@pytest.fixture
def host_process() -> Iterator[None]:
    """This process behaves as a host for the test (as SnakepitHost.__init__ makes it)."""
    _ray_data.host_mode()
    try:
        yield
    finally:
        _numpy.keep_readonly(False)


def _round_trip(value: Any) -> Any:
    encoded = codec.encode(value, snapshot=True)
    return codec.decode(encoded.blob, keep=True)


@pytest.mark.parametrize("size", [16, 1 << 18])  # inline-small and above the threshold
def test_a_host_hands_read_only_arrays_on_read_only(host_process: None, size: int) -> None:
    fetched = np.arange(size, dtype=np.float64)
    fetched.flags.writeable = False  # what ray.get gives a host
    received = _round_trip(fetched)
    assert snakepit.is_shared(received)
    assert not received.flags.writeable
    assert np.array_equal(received, fetched)
    with pytest.raises(ValueError, match="read-only"):
        received[0] = 1.0


def test_outside_a_host_arguments_stay_as_they_were() -> None:
    big = np.arange(1 << 18, dtype=np.float64)
    big.flags.writeable = False
    assert _round_trip(big).flags.writeable  # copied into the arena, as before


def test_remote_results_are_adopted_writable() -> None:
    big = np.ones(1 << 18)
    big.flags.writeable = False  # a view of Ray's store
    small = np.ones(4)
    small.flags.writeable = False
    value = _ray_data.adopt_result({"a": [big, small], "n": 3})
    assert value["n"] == 3
    adopted_big, adopted_small = value["a"]
    assert adopted_big.flags.writeable
    assert adopted_small.flags.writeable
    assert snakepit.is_shared(adopted_big)
    assert np.array_equal(adopted_big, big)
    plain = (1, "x", np.zeros(3))
    assert _ray_data.adopt_result(plain) is plain  # nothing to adopt: no copy


def _remote_call(*args: Any) -> tuple[RayCall, Host]:
    from concurrent.futures import Future

    call = RayCall(1, 1, b"", "f", args, {}, None, False, None, None, Future())
    return call, Host(index=0, first_slot=0, size=1, node_id="node-b")


def test_cuda_references_never_leave_for_another_node() -> None:
    handle = GPUTensorRef(
        handle=bytes(64), offset=0, shape=(4,), dtype="float32", strides=(4,),
        device_id=0, nbytes=16,
    )  # fmt: skip
    call, host = _remote_call([1, {"x": handle}])
    with pytest.raises(DeviceMismatchError, match="cannot cross nodes"):
        _ray_data.payload_for(call, host, "pool-x")


class _FakeCudaTensor:
    is_cuda = True


def test_cuda_tensors_are_refused_too() -> None:
    assert _ray_data._cuda_problem(_FakeCudaTensor()) == "a CUDA _FakeCudaTensor"
    assert _ray_data._cuda_problem(np.zeros(2)) is None


class _FakeRay:
    """``ray.put`` / ``ray.get`` over a dict: what the data plane asks of Ray."""

    def __init__(self) -> None:
        self.store: dict[int, Any] = {}

    def put(self, value: Any) -> int:
        ref = len(self.store) + 1
        self.store[ref] = value
        return ref

    def get(self, refs: list[int]) -> list[Any]:
        return [np.array(self.store[ref]) for ref in refs]


def test_large_and_shared_arrays_go_as_objects_put_once_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeRay()
    monkeypatch.setattr(_ray_data, "import_ray", lambda: fake)
    big, small, shared = np.ones(1 << 18), np.ones(4), snakepit.zeros(4, "float64")
    call, host = _remote_call(big, [small, {"s": shared}])
    how, (args, kwargs) = _ray_data.payload_for(call, host, "pool-x")
    assert how == "ray"
    assert type(args[0]) is _ray_data.ObjectArg
    assert args[1][0] is small  # small and private: inline, a copy as locally
    assert type(args[1][1]["s"]) is _ray_data.ObjectArg
    _ray_data.payload_for(call, host, "pool-x")  # a retry: the same objects
    assert len(fake.store) == 2
    got_args, got_kwargs = _ray_data.resolve_args((args, kwargs))
    assert np.array_equal(got_args[0], big)
    assert not got_args[0].flags.writeable
    assert not got_args[1][1]["s"].flags.writeable
    assert got_kwargs == {}
