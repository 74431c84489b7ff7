"""The advice texts on their own (``snakepit.errors._advice``), without the classes."""

from __future__ import annotations

import pytest

from snakepit.errors import ExitKind, WorkerCrashedError
from snakepit.errors._advice import (
    CRASH_SUGGESTIONS,
    crash_suggestion,
    device_mismatch_suggestion,
    dtype_suggestion,
    oom_suggestion,
    pick_target_device,
    serialization_suggestion,
    shape_suggestion,
    shape_text,
    shared_memory_advice,
    shared_memory_cap_advice,
)

GIB = 1 << 30
MIB = 1 << 20


def test_crash_suggestions_are_keyed_by_exit_kind() -> None:
    assert all(type(kind) is ExitKind for kind in CRASH_SUGGESTIONS)
    assert set(CRASH_SUGGESTIONS) == set(ExitKind) - {
        ExitKind.normal,
        ExitKind.python_error,
        ExitKind.unknown,
    }


@pytest.mark.parametrize("kind", list(ExitKind))
def test_crash_suggestion_by_member_or_plain_value(kind: ExitKind) -> None:
    advice = CRASH_SUGGESTIONS.get(kind)
    assert crash_suggestion(kind) == crash_suggestion(kind.value)
    assert WorkerCrashedError(exit_kind=kind).suggestion == crash_suggestion(kind)
    if advice is None:
        assert crash_suggestion(kind) is None
    else:
        assert (crash_suggestion(kind) or "").startswith(advice)


@pytest.mark.parametrize("kind", ["segfault", "abort", "bus_error", "floating_point_error"])
def test_native_crash_advice_depends_on_an_attached_stack(kind: str) -> None:
    assert "PYTHONFAULTHANDLER=1" in (crash_suggestion(kind) or "")
    with_stack = crash_suggestion(kind, has_stack=True) or ""
    assert "PYTHONFAULTHANDLER" not in with_stack
    assert "remote_traceback" in with_stack
    crashed = WorkerCrashedError(exit_kind=kind, remote_traceback="Fatal Python error")
    assert crashed.suggestion == with_stack


def test_crash_suggestion_of_an_unknown_kind_is_none() -> None:
    assert crash_suggestion("oom_of_the_future") is None
    assert WorkerCrashedError(exit_kind="oom_of_the_future").suggestion is None


def test_shared_memory_advice_names_the_shortfall_and_the_fixes() -> None:
    text = shared_memory_advice(2 * GIB, 64 * MIB)
    assert "enlarge /dev/shm by at least 1.94 GiB" in text
    assert "--shm-size" in text
    assert "mount -o remount,size=" in text
    assert "by at least" not in shared_memory_advice(None, 64 * MIB)
    assert "by at least" not in shared_memory_advice(MIB, GIB)  # it would fit


def test_shared_memory_cap_advice() -> None:
    assert "(currently 4.00 GiB)" in shared_memory_cap_advice(4 * GIB)
    assert "currently" not in shared_memory_cap_advice(None)


def test_shape_text_prints_like_python() -> None:
    assert shape_text((3,)) == "(3,)"
    assert shape_text((3, 4)) == "(3, 4)"
    assert shape_text(()) == "()"
    assert shape_text(None) == "?"


def test_pure_functions_name_their_inputs() -> None:
    assert "a @ b.T" in shape_suggestion((8, 16), (32, 16), "matmul", None)
    assert "x.astype(numpy.int8)" in dtype_suggestion("int8", "int64")
    assert "empty_cache" in oom_suggestion("cuda:0", "torch", 3 * GIB, GIB, None)
    assert "chunks" in oom_suggestion("cpu", "numpy", None, None, None)
    assert pick_target_device(["cpu", "cuda:1"]) == "cuda:1"
    assert pick_target_device(["cpu"]) == "cpu"
    assert pick_target_device([]) is None
    assert "tensor.to('cuda')" in device_mismatch_suggestion([])
    assert "picklable" in serialization_suggestion("encode")
    assert "importable" in serialization_suggestion("decode")
