"""CPU arrays of other libraries (JAX, anything with DLPack) travel zero-copy."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import snakepit

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


def test_jax_arrays_travel_zero_copy() -> None:
    # In a process of its own: JAX, once imported, warns on every later fork
    # (the ProcessPoolExecutor peer in the benchmarks forks).
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed here")
    done = subprocess.run(
        [sys.executable, "-m", "tests.pool._jax_checks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [
        "argument",
        "result",
        "echo",
        "small",
    ]


def test_the_codec_never_imports_jax_itself() -> None:
    script = (
        "import sys, numpy as np\n"
        "from snakepit._wire import codec\n"
        "codec.decode(codec.encode((np.ones(1 << 20), [1, 2], {'a': b'x'})).blob)\n"
        "assert 'jax' not in sys.modules and 'jaxlib' not in sys.modules, 'imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
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
