"""CPU arrays of other libraries (JAX, anything with DLPack) travel zero-copy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit.zero_copy._runtime import threshold_bytes

from . import _host_array_double as double
from . import _jax_tasks as tasks

ROOT = Path(__file__).resolve().parents[2]
COUNT = 1 << 19  # 2 MiB of float32: above the 1 MiB threshold


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(1) as pool:
        yield pool


def _in_shared_memory(place: str | None) -> bool:
    return bool(place) and str(place).startswith("/dev/shm/snakepit-")


def test_a_foreign_dlpack_array_is_rebuilt_by_its_library_over_the_block(
    pool: snakepit.Pool,
) -> None:
    sent = double.HostArray(np.arange(COUNT, dtype=np.float64))
    kind, place = pool.call(tasks.where, sent)
    assert kind == "tests.pool._host_array_double.HostArray"
    assert _in_shared_memory(place), place
    assert pool.call(tasks.total, sent) == float(np.arange(COUNT).sum())


def test_a_small_foreign_array_is_pickled_as_it_defines(pool: snakepit.Pool) -> None:
    sent = double.HostArray(np.arange(10, dtype=np.float64))
    kind, place = pool.call(tasks.where, sent)
    assert kind == "tests.pool._host_array_double.HostArray"
    assert not _in_shared_memory(place)


def test_a_device_array_is_never_read_as_host_memory(pool: snakepit.Pool) -> None:
    sent = double.DeviceArray(np.ones(COUNT, dtype=np.float32))
    kind, place = pool.call(tasks.where, sent)
    assert kind == "tests.pool._host_array_double.DeviceArray"
    assert not _in_shared_memory(place)


@pytest.fixture
def jnp() -> Any:
    return pytest.importorskip("jax.numpy", reason="JAX is not installed here")


def test_a_jax_argument_arrives_as_a_jax_array_over_shared_memory(
    pool: snakepit.Pool, jnp: Any
) -> None:
    kind, place = pool.call(tasks.where, jnp.arange(COUNT, dtype=jnp.float32))
    assert kind.endswith("ArrayImpl")
    assert _in_shared_memory(place), place


def test_a_jax_result_arrives_over_shared_memory(pool: snakepit.Pool, jnp: Any) -> None:
    result = pool.call(tasks.jax_range, COUNT)
    assert isinstance(result, pytest.importorskip("jax").Array)
    assert _in_shared_memory(tasks.where(result)[1])
    assert bool((result == jnp.arange(COUNT, dtype=jnp.float32)).all())


def test_an_echoed_jax_array_comes_back_in_the_same_block(pool: snakepit.Pool, jnp: Any) -> None:
    sent = jnp.arange(COUNT, dtype=jnp.float32)
    _, seen_by_worker = pool.call(tasks.where, sent)
    back = pool.call(tasks.echo, sent)
    # The worker sent back the block it was lent: no copy on its side.
    assert tasks.where(back)[1] == seen_by_worker
    assert bool((back == sent).all())


def test_a_small_jax_array_round_trips(pool: snakepit.Pool, jnp: Any) -> None:
    small = jnp.arange(16, dtype=jnp.int32)
    back = pool.call(tasks.echo, small)
    assert isinstance(back, pytest.importorskip("jax").Array)
    assert back.tolist() == list(range(16))
    assert small.nbytes < threshold_bytes()


def test_the_codec_never_imports_jax_itself() -> None:
    script = (
        "import sys, numpy as np\n"
        "from snakepit._wire import codec\n"
        "codec.decode(codec.encode((np.ones(1 << 20), [1, 2], {'a': b'x'})).blob)\n"
        "assert 'jax' not in sys.modules and 'jaxlib' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("extra", [None, 3, "", "os;rm", "numpy", "torch.nn", "a..b", ("jax",)])
def test_a_descriptor_naming_no_library_or_a_carried_one_is_refused(extra: object) -> None:
    from snakepit.errors import InvalidDescriptorError
    from snakepit.zero_copy import _host_arrays

    with pytest.raises(InvalidDescriptorError):
        _host_arrays.from_block(np.zeros(4), extra)


def test_a_library_that_is_missing_gives_a_numpy_array() -> None:
    from snakepit.zero_copy import _host_arrays

    array = np.arange(4.0)
    assert _host_arrays.from_block(array, "no_such_library_here._core") is array
