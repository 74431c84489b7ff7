"""Tests for carrying exceptions from worker to supervisor.

Messages come from real numpy calls where possible; torch messages are literal
copies of what PyTorch prints, raised from classes that mimic torch's module
and base types, so no torch install is needed. The broad accuracy check over
real library messages is ``test_corpus.py``; hostile inputs are in
``test_properties.py``.
"""

from __future__ import annotations

import json
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from snakepit.errors import (
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    InvalidDescriptorError,
    OutOfMemoryError,
    PythonError,
    RemoteTraceback,
    SerializationError,
    ShapeError,
    SnakepitError,
)
from snakepit.errors._base import remote_class
from snakepit.errors._parse import parse_context
from snakepit.errors._remote import exception_to_record, record_to_exception

GIB = 1 << 30
MIB = 1 << 20


def _capture(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def _through_wire(exc: BaseException) -> SnakepitError:
    """What the pool does: record in the worker, JSON on the wire, rebuild."""
    record = exception_to_record(exc)
    wire = json.loads(json.dumps(record))
    assert wire == record  # the record is plain data
    return record_to_exception(wire)


def _torch_error(name: str, base: type[Exception], message: str, module: str) -> Exception:
    cls = type(name, (base,), {"__module__": module})
    return cls(message)


def _failing_lookup() -> None:
    d: dict[str, int] = {}
    d["missing"]


# ---------------------------------------------------------------- builtins


@pytest.mark.parametrize(
    ("fn", "builtin"),
    [
        (_failing_lookup, KeyError),
        (lambda: int("nope"), ValueError),
        (lambda: len(5), TypeError),  # type: ignore[arg-type]
        (lambda: [1][3], IndexError),
        (lambda: 1 / 0, ZeroDivisionError),
        (lambda: None.foo, AttributeError),  # type: ignore[attr-defined]
        (lambda: Path("/nonexistent/snakepit/file").read_text(), FileNotFoundError),
        (lambda: np.ones(3)[5], IndexError),
    ],
)
def test_builtin_errors_stay_catchable(fn: Callable[[], object], builtin: type[Exception]) -> None:
    original = _capture(fn)
    exc = _through_wire(original)
    assert isinstance(exc, PythonError)
    assert isinstance(exc, builtin)
    assert exc.python_type == type(original).__name__
    assert exc.qualified_type == f"builtins.{type(original).__name__}"
    assert exc.message == str(original)
    with pytest.raises(builtin):
        raise exc


def test_runtime_error_and_not_implemented() -> None:
    exc = _through_wire(_capture(lambda: (_ for _ in ()).throw(NotImplementedError("later"))))
    assert isinstance(exc, NotImplementedError)
    assert isinstance(exc, RuntimeError)


def test_key_error_round_trip_keeps_traceback_and_pickles() -> None:
    exc = _through_wire(_capture(_failing_lookup))
    assert isinstance(exc, KeyError)
    assert exc.remote_traceback is not None
    assert "_failing_lookup" in exc.remote_traceback
    assert "KeyError: 'missing'" in exc.remote_traceback
    # Shown like concurrent.futures does: the remote traceback is the __cause__.
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert exc.__cause__.text == exc.remote_traceback
    assert not hasattr(exc, "__notes__")
    printed = "".join(traceback.format_exception(exc))
    assert "_failing_lookup" in printed
    assert "The above exception was the direct cause of the following exception" in printed
    assert printed.index("_failing_lookup") < printed.index("KeyError: KeyError: 'missing'")
    clone = pickle.loads(pickle.dumps(exc))
    assert isinstance(clone, KeyError)
    assert isinstance(clone, PythonError)
    assert clone.remote_traceback == exc.remote_traceback
    assert isinstance(clone.__cause__, RemoteTraceback)
    assert clone.__cause__.text == exc.remote_traceback
    assert str(clone) == "KeyError: 'missing'"


def test_user_exception_types() -> None:
    class MyError(Exception):
        pass

    class MyValueError(ValueError):
        pass

    plain = _through_wire(MyError("custom"))
    assert type(plain) is PythonError
    assert plain.python_type == "MyError"
    assert plain.qualified_type.endswith("test_user_exception_types.<locals>.MyError")
    assert plain.qualified_type.startswith("tests.errors.test_remote.")
    derived = _through_wire(MyValueError("v"))
    assert isinstance(derived, ValueError)
    assert derived.python_type == "MyValueError"


def test_foreign_type_named_like_builtin_is_not_caught_as_it() -> None:
    record = {
        "python_type": "KeyError",
        "qualified_type": "mylib.KeyError",
        "builtin_type": "Exception",
        "message": "shadow",
    }
    exc = record_to_exception(record)
    assert isinstance(exc, PythonError)
    assert not isinstance(exc, KeyError)
    legacy = record_to_exception({"python_type": "KeyError", "qualified_type": "builtins.KeyError"})
    assert isinstance(legacy, KeyError)


def test_reraised_remote_error_keeps_identity() -> None:
    first = _through_wire(_capture(_failing_lookup))
    second = _through_wire(first)
    assert isinstance(second, KeyError)
    assert isinstance(second, PythonError)
    assert second.python_type == "KeyError"
    assert second.message == "'missing'"


def test_snakepit_error_raised_in_worker_comes_back_as_itself() -> None:
    original = InvalidDescriptorError(reason="bad magic", name="/snakepit-1-abc", status=-3)
    exc = _through_wire(original)
    assert type(exc) is InvalidDescriptorError
    assert exc.reason == "bad magic"
    assert exc.name == "/snakepit-1-abc"
    assert exc.status == -3
    assert exc.remote_traceback is not None
    shape = _through_wire(ShapeError(shape_a=(3, 4), shape_b=(2, 2), operation="matmul"))
    assert type(shape) is ShapeError
    assert shape.shape_a == (3, 4)  # JSON lists became tuples again


# ------------------------------------------------------------------ chains


def test_explicit_cause_chain() -> None:
    def fail() -> None:
        try:
            _failing_lookup()
        except KeyError as e:
            raise ValueError("wrapped") from e

    record = exception_to_record(_capture(fail))
    causes = record["causes"]
    assert isinstance(causes, list)
    assert len(causes) == 1
    assert causes[0]["relation"] == "cause"
    assert causes[0]["python_type"] == "KeyError"
    exc = record_to_exception(json.loads(json.dumps(record)))
    assert isinstance(exc, ValueError)
    (cause,) = exc.remote_causes
    assert isinstance(cause, KeyError)
    assert isinstance(cause, PythonError)
    assert cause.remote_traceback is not None
    assert "_failing_lookup" in cause.remote_traceback
    assert "The above exception was the direct cause" in str(record["traceback"])
    # The remote chain is part of the traceback the supervisor shows.
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "_failing_lookup" in exc.__cause__.text
    assert "wrapped" in exc.__cause__.text


def test_implicit_context_chain() -> None:
    def fail() -> None:
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            raise RuntimeError("while handling")  # noqa: B904

    record = exception_to_record(_capture(fail))
    causes = record["causes"]
    assert isinstance(causes, list)
    assert [c["relation"] for c in causes] == ["context"]
    assert causes[0]["python_type"] == "ZeroDivisionError"


def test_cause_chain_is_bounded_and_cycle_safe() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert len(exception_to_record(a)["causes"]) == 1  # type: ignore[arg-type]
    head = ValueError("0")
    current = head
    for i in range(1, 30):
        nxt = ValueError(str(i))
        current.__cause__ = nxt
        current = nxt
    causes = exception_to_record(head)["causes"]
    assert isinstance(causes, list)
    assert len(causes) == 8


# ----------------------------------------------------------- shapes (numpy)


def test_numpy_matmul_core_dimension_mismatch() -> None:
    original = _capture(lambda: np.ones((3, 4)) @ np.ones((2, 2)))
    exc = _through_wire(original)
    assert isinstance(exc, ShapeError)
    assert isinstance(exc, ValueError)
    assert exc.operation == "matmul"
    assert exc.shape_a == (4,)
    assert exc.shape_b == (2,)
    assert exc.dimension == 0
    assert "transpose" in (exc.suggestion or "")
    assert exc.message == str(original)


def test_numpy_matmul_transposable_operands() -> None:
    exc = _through_wire(_capture(lambda: np.dot(np.ones((3, 4)), np.ones((5, 4)))))
    assert isinstance(exc, ShapeError)
    assert (exc.shape_a, exc.shape_b, exc.operation) == ((3, 4), (5, 4), "matmul")
    assert "a @ b.T" in (exc.suggestion or "")
    assert "(3, 5)" in (exc.suggestion or "")


def test_numpy_broadcast_mismatch() -> None:
    exc = _through_wire(_capture(lambda: np.ones((3, 4)) + np.ones((2, 2))))
    assert isinstance(exc, ShapeError)
    assert isinstance(exc, ValueError)
    assert (exc.shape_a, exc.shape_b, exc.operation) == ((3, 4), (2, 2), "broadcast")
    assert "reshape" in (exc.suggestion or "")


def test_numpy_reshape_mismatch() -> None:
    exc = _through_wire(_capture(lambda: np.ones(10).reshape(2, 3)))
    assert isinstance(exc, ShapeError)
    assert (exc.shape_a, exc.shape_b, exc.operation) == ((10,), (2, 3), "reshape")


def test_numpy_remapped_broadcast_shapes() -> None:
    exc = _through_wire(_capture(lambda: np.broadcast_to(np.ones((3, 4)), (2, 3))))
    assert isinstance(exc, ShapeError)
    assert exc.operation == "broadcast"
    assert exc.shape_a == (3, 4)


# ----------------------------------------------------------- shapes (torch)


@pytest.mark.parametrize(
    ("message", "shape_a", "shape_b", "operation", "dimension"),
    [
        ("mat1 and mat2 shapes cannot be multiplied (3x4 and 2x2)", (3, 4), (2, 2), "matmul", None),
        (
            "The size of tensor a (3) must match the size of tensor b (4) at non-singleton "
            "dimension 1",
            (3,),
            (4,),
            "broadcast",
            1,
        ),
        (
            "Target size (torch.Size([3, 4])) must be the same as input size (torch.Size([3, 1]))",
            (3, 4),
            (3, 1),
            None,
            None,
        ),
        ("shape '[2, 3]' is invalid for input of size 10", (10,), (2, 3), "reshape", None),
        ("size mismatch: got (3,4) and (2,2)", (3, 4), (2, 2), None, None),
    ],
)
def test_torch_shape_messages(
    message: str,
    shape_a: tuple[int, ...],
    shape_b: tuple[int, ...],
    operation: str | None,
    dimension: int | None,
) -> None:
    exc = _through_wire(RuntimeError(message))
    assert isinstance(exc, ShapeError)
    assert isinstance(exc, RuntimeError)
    assert exc.shape_a == shape_a
    assert exc.shape_b == shape_b
    assert exc.operation == operation
    assert exc.dimension == dimension
    assert exc.suggestion


def test_torch_matmul_suggests_exact_transpose() -> None:
    exc = _through_wire(RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x16 and 32x16)"))
    assert isinstance(exc, ShapeError)
    assert "a @ b.T" in (exc.suggestion or "")
    assert "(8, 32)" in (exc.suggestion or "")


# ------------------------------------------------------------------ dtypes


def test_numpy_ufunc_cast_error() -> None:
    out = np.zeros(3, dtype=np.int64)
    original = _capture(lambda: np.add(np.ones(3), 1.5, out=out))
    exc = _through_wire(original)
    assert isinstance(exc, DtypeError)
    assert isinstance(exc, TypeError)
    assert (exc.expected, exc.got, exc.operation) == ("int64", "float64", "add")
    assert "astype(numpy.int64)" in (exc.suggestion or "")


@pytest.mark.parametrize(
    ("message", "expected", "got"),
    [
        ("expected scalar type Float but found Double", "float32", "float64"),
        (
            "expected m1 and m2 to have the same dtype, but got: float != double",
            "float32",
            "float64",
        ),
        ("result type Float can't be cast to the desired output type Long", "int64", "float32"),
        ("Input type (double) and bias type (float) should be the same", "float32", "float64"),
        (
            "mat1 and mat2 must have the same dtype, but got Half and BFloat16",
            "float16",
            "bfloat16",
        ),
    ],
)
def test_torch_dtype_messages(message: str, expected: str, got: str) -> None:
    exc = _through_wire(RuntimeError(message))
    assert isinstance(exc, DtypeError)
    assert isinstance(exc, RuntimeError)
    assert (exc.expected, exc.got) == (expected, got)
    assert f"torch.{expected}" in (exc.suggestion or "")


# ----------------------------------------------------------------- devices


@pytest.mark.parametrize(
    ("message", "devices", "target"),
    [
        (
            "Expected all tensors to be on the same device, but found at least two devices, "
            "cuda:0 and cpu!",
            ("cuda:0", "cpu"),
            "cuda:0",
        ),
        (
            "Expected all tensors to be on the same device, but got mat2 is on cpu, different "
            "from other tensors on cuda:1 (when checking argument in method wrapper_CUDA_mm)",
            ("cpu", "cuda:1"),
            "cuda:1",
        ),
        (
            "Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be "
            "the same or input should be a MKLDNN tensor and weight is a dense tensor",
            ("cuda", "cpu"),
            "cuda",
        ),
    ],
)
def test_device_mismatch(message: str, devices: tuple[str, ...], target: str) -> None:
    exc = _through_wire(RuntimeError(message))
    assert isinstance(exc, DeviceMismatchError)
    assert isinstance(exc, RuntimeError)
    assert exc.devices == devices
    assert exc.device == target
    assert f".to('{target}')" in (exc.suggestion or "")


# --------------------------------------------------------------------- OOM


def test_torch_cuda_oom_legacy_format() -> None:
    message = (
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; "
        "12.34 GiB already allocated; 1.50 GiB free; 13.00 GiB reserved in total by PyTorch) "
        "If reserved memory is >> allocated memory try setting max_split_size_mb"
    )
    original = _torch_error("OutOfMemoryError", RuntimeError, message, "torch.cuda")
    record = exception_to_record(original)
    assert record["qualified_type"] == "torch.cuda.OutOfMemoryError"
    assert record["builtin_type"] == "RuntimeError"
    exc = record_to_exception(json.loads(json.dumps(record)))
    assert isinstance(exc, OutOfMemoryError)
    assert isinstance(exc, RuntimeError)
    assert exc.device == "cuda:0"
    assert exc.requested == 2 * GIB
    assert exc.available == round(1.5 * GIB)
    assert exc.total == round(15.78 * GIB)
    assert exc.remote_type == "torch.cuda.OutOfMemoryError"
    suggestion = exc.suggestion or ""
    assert "batch size" in suggestion
    assert "float16" in suggestion
    assert "empty_cache" in suggestion
    assert "512.00 MiB larger" in suggestion


def test_torch_cuda_oom_current_format() -> None:
    message = (
        "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 1 has a total capacity of "
        "79.15 GiB of which 5.69 MiB is free. Including non-PyTorch memory, this process has "
        "79.14 GiB memory in use."
    )
    exc = _through_wire(_torch_error("OutOfMemoryError", RuntimeError, message, "torch.cuda"))
    assert isinstance(exc, OutOfMemoryError)
    assert exc.device == "cuda:1"
    assert exc.requested == 20 * MIB
    assert exc.available == round(5.69 * MIB)
    assert exc.total == round(79.15 * GIB)


def test_numpy_unable_to_allocate() -> None:
    shape = (1 << 24, 1 << 24)  # 2 PiB of float64: no machine can map that
    original = _capture(lambda: np.empty(shape))
    assert isinstance(original, MemoryError)
    exc = _through_wire(original)
    assert isinstance(exc, OutOfMemoryError)
    assert isinstance(exc, MemoryError)
    assert exc.device == "cpu"
    wanted = shape[0] * shape[1] * 8
    assert exc.requested is not None
    assert abs(exc.requested - wanted) / wanted < 0.01
    assert "chunks" in (exc.suggestion or "")


def test_bare_memory_error_uses_live_host_figures() -> None:
    record = exception_to_record(MemoryError())
    context = record["context"]
    assert isinstance(context, dict)
    assert context["category"] == "oom"
    exc = record_to_exception(record)
    assert isinstance(exc, OutOfMemoryError)
    assert isinstance(exc, MemoryError)
    assert exc.device == "cpu"
    live = context["memory"].get("live", {})
    if "host_available" in live:
        assert exc.available == live["host_available"]
        assert exc.total == live["host_total"]
    else:  # pragma: no cover - platforms without sysconf page counts
        assert exc.available is None


# ------------------------------------------------------ parsing and records


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("3x4 and 2x2 shapes cannot be multiplied", "shape"),
        ("expected scalar type Half but found Float", "dtype"),
        ("CUDA out of memory. Tried to allocate 1.00 GiB", "oom"),
        ("nothing to see here (3,4) (5,6)", None),
        ("index 5 is out of bounds for axis 0 with size 3", None),
        ("sizes differ: np.int64(3) and reshape(4, 5)", None),  # calls, not shapes
        ("No CUDA GPUs are available", "device_unavailable"),
        ("Tensor on device cpu is not on the expected device meta!", "device"),
        ("all input arrays must have the same shape", "shape"),
        ("malloc of size 64 failed", "oom"),
    ],
)
def test_parse_context_categories(message: str, category: str | None) -> None:
    assert parse_context(message).get("category") == category


def test_record_fields() -> None:
    record = exception_to_record(_capture(_failing_lookup))
    assert record["python_type"] == "KeyError"
    assert record["qualified_type"] == "builtins.KeyError"
    assert record["module"] == "builtins"
    assert record["builtin_type"] == "KeyError"
    assert record["message"] == "'missing'"
    assert "Traceback (most recent call last)" in str(record["traceback"])
    assert record["causes"] == []
    assert record["version"] == 1


def test_remote_notes_are_carried() -> None:
    original = ValueError("x")
    original.add_note("hint from worker")
    exc = _through_wire(original)
    assert "hint from worker" in exc.__notes__


def test_unprintable_exception() -> None:
    class WeirdError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    record = exception_to_record(WeirdError())
    assert "WeirdError" in str(record["message"])
    assert isinstance(record_to_exception(record), PythonError)


def test_huge_message_is_truncated() -> None:
    record = exception_to_record(ValueError("x" * 200_000))
    message = record["message"]
    assert isinstance(message, str)
    assert len(message) < 25_000
    assert "characters omitted" in message


@pytest.mark.parametrize(
    "record",
    [
        "junk",
        42,
        None,
        ["python_type", "KeyError"],
    ],
)
def test_malformed_record_gives_serialization_error(record: Any) -> None:
    exc = record_to_exception(record)
    assert isinstance(exc, SerializationError)
    assert exc.direction == "decode"


def test_record_with_wrong_field_types_degrades_to_python_error() -> None:
    exc = record_to_exception(
        {
            "python_type": 5,
            "message": None,
            "traceback": ["x"],
            "context": {"category": "shape", "shapes": "nope"},
            "causes": ["bad"],
            "notes": [1, "kept"],
            "snakepit": {"class": "NoSuchError", "fields": {}},
        }
    )
    assert type(exc) is PythonError
    assert exc.remote_traceback is None
    assert exc.__cause__ is None
    assert exc.__notes__ == ["kept"]


def test_snakepit_section_with_bad_fields_falls_back() -> None:
    record = exception_to_record(ValueError("v"))
    record["snakepit"] = {"class": "WorkerTimeoutError", "fields": {"timeout": "soon"}}
    exc = record_to_exception(record)
    assert type(exc) is remote_class(PythonError, ValueError)


# ------------------------------------------------------------ more records


def test_remote_causes_are_bounded_and_rebuilt() -> None:
    head = ValueError("0")
    current = head
    for i in range(1, 30):
        nxt = KeyError(str(i))
        current.__cause__ = nxt
        current = nxt
    exc = _through_wire(head)
    assert len(exc.remote_causes) == 8
    assert all(isinstance(c, KeyError) and isinstance(c, PythonError) for c in exc.remote_causes)
    assert [c.message for c in exc.remote_causes[:2]] == ["'1'", "'2'"]


def test_lone_surrogates_become_escapes() -> None:
    record = exception_to_record(ValueError("bad byte \udcff here"))
    assert record["message"] == "bad byte \\udcff here"
    json.dumps(record).encode("utf-8")
    assert "\\udcff" in str(record["traceback"])


def test_exception_that_defeats_the_extractor_still_gives_a_record() -> None:
    class HostileError(Exception):
        def __getattribute__(self, name: str) -> Any:
            if name in {"__class__", "__dict__", "args", "with_traceback"}:
                return super().__getattribute__(name)
            raise RuntimeError(name)

    record = exception_to_record(HostileError("x"))
    assert record["python_type"] == "HostileError"
    assert str(record["qualified_type"]).endswith(".HostileError")
    assert record["builtin_type"] == "Exception"
    assert "could not be built" in str(record["message"])
    assert type(record_to_exception(record)) is PythonError


def test_notes_that_are_not_a_list_of_str() -> None:
    exc = ValueError("v")
    exc.__notes__ = 5  # type: ignore[attr-defined]
    assert exception_to_record(exc)["notes"] == []
    exc.__notes__ = ["kept", 3, b"bytes"]  # type: ignore[attr-defined]
    assert exception_to_record(exc)["notes"] == ["kept"]


def test_device_not_available() -> None:
    exc = _through_wire(AssertionError("Torch not compiled with CUDA enabled"))
    assert isinstance(exc, DeviceNotAvailableError)
    assert isinstance(exc, AssertionError)
    assert exc.device == "cuda"
    assert exc.reason == "Torch not compiled with CUDA enabled"
    ordinal = _through_wire(RuntimeError("CUDA error: invalid device ordinal on cuda:3"))
    assert isinstance(ordinal, DeviceNotAvailableError)
    assert ordinal.device == "cuda:3"


def test_three_operand_broadcast_reports_the_clashing_pair() -> None:
    message = "operands could not be broadcast together with shapes (3,4) (4,) (5,) "
    exc = _through_wire(ValueError(message))
    assert isinstance(exc, ShapeError)
    assert exc.shapes == ((3, 4), (4,), (5,))
    assert (exc.shape_a, exc.shape_b) == ((3, 4), (5,))


def test_snakepit_error_from_worker_keeps_all_shapes() -> None:
    original = ShapeError(
        shape_a=(3, 4), shape_b=(5,), operation="broadcast", shapes=[(3, 4), (4,), (5,)]
    )
    exc = _through_wire(original)
    assert type(exc) is ShapeError
    assert exc.shapes == ((3, 4), (4,), (5,))
    assert exc.remote_type == "snakepit.errors.ShapeError"


@pytest.mark.parametrize(
    ("message", "framework", "lever"),
    [
        ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1024 bytes.", "jax", "donate"),
        ("CUDA out of memory. Tried to allocate 2.00 MiB", "torch", "empty_cache"),
    ],
)
def test_oom_suggestion_follows_the_framework(message: str, framework: str, lever: str) -> None:
    exc = record_to_exception(exception_to_record(RuntimeError(message), memory_probe=lambda d: {}))
    assert isinstance(exc, OutOfMemoryError)
    assert exc.framework == framework
    assert lever in (exc.suggestion or "")
