"""Reference counts, reuse, space checks and cleanup after dead owners."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import snakepit
from snakepit import _core, zero_copy
from snakepit.cli import doctor_report, main
from snakepit.errors import SharedMemoryCapError, SharedMemoryExhaustedError
from snakepit.zero_copy import _runtime

MIB = 1 << 20


def test_from_ref_holds_a_reference_until_the_view_dies() -> None:
    array = snakepit.zeros(1024, "uint8")
    ref = snakepit.ref_of(array)
    assert zero_copy.block_refcount(ref) == 1
    view = snakepit.from_ref(ref)
    assert zero_copy.block_refcount(ref) == 2
    borrowed = snakepit.from_ref(ref, mode="borrow")
    assert zero_copy.block_refcount(ref) == 2
    del view, borrowed
    assert zero_copy.block_refcount(ref) == 1


def test_block_is_not_reused_while_another_process_holds_it() -> None:
    array = snakepit.zeros(4096, "uint8")
    ref = snakepit.ref_of(array)
    address = array.__array_interface__["data"][0]
    foreign = _runtime.take_transfer_ref(array)  # as if another process held it
    ref.release()
    del array
    others = [snakepit.empty(4096, "uint8") for _ in range(4)]
    assert all(o.__array_interface__["data"][0] != address for o in others)
    _runtime.drop_transfer_ref(foreign)
    assert zero_copy.reclaim() == 1
    again = snakepit.empty(4096, "uint8")
    assert again.__array_interface__["data"][0] == address
    del others


def test_release_via_context_manager_frees_the_block_for_reuse() -> None:
    before = zero_copy.arena_stats().get("reuses", 0)
    with snakepit.ref_of(snakepit.empty(3 * MIB, "uint8")):
        pass
    snakepit.empty(3 * MIB, "uint8")
    assert zero_copy.arena_stats()["reuses"] > before


@pytest.fixture
def small_cap() -> Iterator[int]:
    cap = 48 * MIB
    zero_copy.configure(cap_bytes=cap)
    try:
        yield cap
    finally:
        zero_copy.configure(cap_bytes=0)


def test_cap_is_a_typed_error_naming_sizes(small_cap: int) -> None:
    with pytest.raises(SharedMemoryCapError) as info:
        snakepit.empty(200 * MIB, "uint8")
    error = info.value
    assert error.requested == 200 * MIB
    assert error.available is not None
    assert error.available <= small_cap
    assert "200" in str(error)
    assert "cap" in str(error).lower()


def test_enospc_from_the_core_is_a_typed_error() -> None:
    _core.debug_fail_fallocate(errno.ENOSPC, 1)
    try:
        with pytest.raises(SharedMemoryExhaustedError) as info:
            snakepit.empty(40 * MIB, "uint8")  # large: needs a fresh region
    finally:
        _core.debug_fail_fallocate(0, 0)
    error = info.value
    assert error.requested == 40 * MIB
    assert error.available is not None
    assert "shm-size" in str(error) or "remount" in str(error)
    assert not isinstance(error, SharedMemoryCapError)
    # Nothing half-created is left behind, and the next allocation works.
    assert snakepit.empty(40 * MIB, "uint8").nbytes == 40 * MIB


OWNER = textwrap.dedent(
    """
    import sys, time
    import snakepit
    arrays = [snakepit.zeros(1 << 16, "uint8"), snakepit.zeros(40 << 20, "uint8")]
    print(snakepit.ref_of(arrays[0]).region, snakepit.ref_of(arrays[1]).region, flush=True)
    time.sleep(600)
    """
)


def _killed_owner_regions() -> list[str]:
    with subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        names = proc.stdout.readline().decode().split()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(names) == 2
    for name in names:
        assert os.path.exists("/dev/shm" + name), name
    return names


def test_sigkilled_owner_regions_are_collected() -> None:
    names = _killed_owner_regions()
    removed = zero_copy.collect_garbage()
    assert set(names) <= set(removed)
    assert not any(os.path.exists("/dev/shm" + n) for n in names)


def test_snakepit_gc_command_removes_dead_regions(capsys: pytest.CaptureFixture[str]) -> None:
    names = _killed_owner_regions()
    assert main(["gc"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in names)
    assert not any(os.path.exists("/dev/shm" + n) for n in names)


def test_live_owner_regions_are_left_alone() -> None:
    array = snakepit.zeros(16, "uint8")
    assert zero_copy.collect_garbage() == []
    assert os.path.exists("/dev/shm" + snakepit.ref_of(array).region)


def test_regions_are_private_to_the_user() -> None:
    array = snakepit.zeros(16, "uint8")
    mode = os.stat("/dev/shm" + snakepit.ref_of(array).region).st_mode & 0o777
    assert mode == 0o600


def test_doctor_warns_when_shm_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zero_copy, "shm_space", lambda: (64 * MIB, 60 * MIB))
    report = doctor_report()
    assert report["shm_total_bytes"] == 64 * MIB
    assert any("--shm-size" in w for w in report["warnings"])  # type: ignore[attr-defined]


def test_doctor_reports_real_shm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    assert '"shm_total_bytes"' in capsys.readouterr().out


def test_doctor_says_whether_the_call_path_runs_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from snakepit import _compiled

    expected = "compiled (" if os.environ.get("SNAKEPIT_PURE_PYTHON") != "1" else "from source"
    assert expected in doctor_report()["call_path"]
    # A module that runs from its source is named.
    monkeypatch.setattr(_compiled, "COMPILED_MODULES", ("snakepit._util",))
    assert doctor_report()["call_path"] == ("1 of 1 modules from source (slower): snakepit._util")


def test_next_process_to_start_an_arena_collects_dead_regions() -> None:
    names = _killed_owner_regions()
    script = "import snakepit; snakepit.empty(16, 'uint8'); print('started')"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert not any(os.path.exists("/dev/shm" + n) for n in names)


def test_hot_path_takes_no_page_faults() -> None:
    import resource

    nbytes = 8 * MIB
    warm = snakepit.empty(nbytes, "uint8")
    warm.fill(1)
    snakepit.ref_of(warm).release()
    del warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        array = snakepit.empty(nbytes, "uint8")
        array.fill(2)  # touches all 2048 pages
        snakepit.ref_of(array).release()
        del array
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # Fresh memory would fault on every page: 20 * 2048 = 40960.
    assert faults < 500


def test_trim_gives_back_cached_large_regions() -> None:
    array = snakepit.empty(40 * MIB, "uint8")
    ref = snakepit.ref_of(array)
    ref.release()
    del array
    assert os.path.exists("/dev/shm" + ref.region)  # kept for reuse
    zero_copy.trim()
    assert not os.path.exists("/dev/shm" + ref.region)


@pytest.mark.parametrize(
    "shape",
    [
        (1 << 40,),
        (1 << 62,),
        (1 << 31, 1 << 31, 4),
        (1 << 63,),  # beyond a signed 64-bit dimension
        (1 << 70, 2),
        (3, 1 << 32, 1 << 32),
        [1 << 40],
        1 << 70,
        (np.int64(1 << 40), 8),
    ],
)
def test_oversized_requests_are_typed_errors(shape: Any) -> None:
    before = zero_copy.arena_stats().get("live_blocks", 0)
    with pytest.raises(SharedMemoryExhaustedError) as info:
        snakepit.empty(shape, "float64")
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    assert info.value.requested == 8 * math.prod(int(dim) for dim in dims)
    assert zero_copy.arena_stats().get("live_blocks", 0) == before  # nothing half-made


def test_an_empty_array_with_a_dimension_beyond_64_bits_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="64 bits"):
        snakepit.empty((0, 1 << 70), "float64")
    assert snakepit.empty((0, 1 << 40), "float64").shape == (0, 1 << 40)


def test_more_than_64_dimensions_are_a_value_error() -> None:
    assert snakepit.empty((1,) * 64, "uint8").ndim == 64
    for shape in [(1,) * 65, [1] * 65]:
        with pytest.raises(ValueError, match="64 dimensions"):
            snakepit.empty(shape, "uint8")


@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [
        ((-1,), ValueError, "negative"),
        ((2, "x"), TypeError, None),
        ((0, 1 << 70), ValueError, "64 bits"),
        ((1 << 62,), SharedMemoryExhaustedError, None),
    ],
)
def test_an_allocation_with_a_known_dtype_and_a_made_arena_fails_the_same_way(
    shape: Any, error: type[Exception], match: str | None
) -> None:
    dtype = np.dtype("float32")
    snakepit.empty((4,), dtype)  # the arena made, the dtype seen: empty's short way
    before = zero_copy.arena_stats().get("live_blocks", 0)
    with pytest.raises(error, match=match):
        snakepit.empty(shape, dtype)
    assert zero_copy.arena_stats().get("live_blocks", 0) == before
    assert snakepit.empty((3, 2), dtype).shape == (3, 2)
