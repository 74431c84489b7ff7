"""Tests for the exception hierarchy: fields, defaults, pickling, remote classes, registry."""

from __future__ import annotations

import copy
import errno
import inspect
import pickle

import pytest

import snakepit.errors as errors
from snakepit.errors import (
    CallCancelledError,
    CircuitOpenError,
    DeviceError,
    DeviceMismatchError,
    DeviceNotAvailableError,
    DtypeError,
    InvalidDescriptorError,
    OutOfMemoryError,
    PoolClosedError,
    PythonError,
    RemoteTraceback,
    SerializationError,
    SessionLostError,
    ShapeError,
    SharedMemoryCapError,
    SharedMemoryError,
    SharedMemoryExhaustedError,
    SnakepitError,
    UnshareableMemoryError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
    WorkerTimeoutError,
    WorkerUnavailableError,
    _remote,
)
from snakepit.errors._base import (
    builtin_exception_type,
    error_class,
    registered_classes,
    remote_class,
)

GIB = 1 << 30
MIB = 1 << 20

# One instance of every class, every field set to a non-default value so a
# field dropped by pickling cannot go unnoticed.
INSTANCES: list[SnakepitError] = [
    SnakepitError("boom", suggestion="do x", remote_traceback="tb", remote_type="m.T"),
    PythonError(
        "bad key",
        python_type="KeyError",
        qualified_type="builtins.KeyError",
        remote_traceback="Traceback (most recent call last): ...",
        suggestion="check the key",
    ),
    RemoteTraceback(text="Traceback (most recent call last):\n  ...\nKeyError: 'k'\n"),
    ShapeError(
        shape_a=(3, 4),
        shape_b=(2,),
        operation="broadcast",
        dimension=1,
        shapes=((3, 4), (3, 4), (2,)),
    ),
    DtypeError(expected="float32", got="float64", operation="add"),
    DeviceError("device trouble", device="cuda:1"),
    OutOfMemoryError(
        device="cuda:0", requested=2 * GIB, available=GIB, total=16 * GIB, framework="torch"
    ),
    DeviceMismatchError(devices=("cuda:0", "cpu")),
    DeviceNotAvailableError(device="cuda:3", reason="no driver"),
    UnshareableMemoryError(device="cuda:0", memory_kind="pool", reason="cudaMallocAsync"),
    SerializationError(direction="decode", type_name="Foo"),
    WorkerError(worker_id=2),
    WorkerCrashedError(exit_kind="segfault", signal=11, exit_code=None, worker_id=4),
    WorkerTimeoutError(timeout=1.5, worker_id=1),
    WorkerUnavailableError(reason="all slots unhealthy", worker_id=7),
    PoolClosedError(reason="closed by the test", worker_id=3),
    CallCancelledError("stopped by the test", worker_id=5),
    WorkerStartError(reason="its initializer raised", worker_id=1, exit_kind="python_error"),
    SessionLostError(session="model", exit_kind="segfault", pid=4321, worker_id=2),
    CircuitOpenError(circuit="device:cuda:0", retry_after=12.5),
    SharedMemoryError(name="/snakepit-1-00", status=-13, os_errno=errno.EIO),
    InvalidDescriptorError(reason="bad magic", name="/snakepit-1-ab", status=-3),
    SharedMemoryExhaustedError(
        requested=2 * GIB, available=64 * MIB, hint="grow it", name="/snakepit-2-cd"
    ),
    SharedMemoryCapError(requested=GIB, available=MIB, cap=4 * GIB, name="/snakepit-3-ef"),
]


def _public_error_classes() -> set[type[SnakepitError]]:
    return {
        obj
        for name in errors.__all__
        if inspect.isclass(obj := getattr(errors, name)) and issubclass(obj, SnakepitError)
    }


def test_instances_cover_every_public_class() -> None:
    assert {type(e) for e in INSTANCES} == _public_error_classes()


@pytest.mark.parametrize("exc", INSTANCES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_every_field(exc: SnakepitError) -> None:
    exc.add_note("a note")
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert clone.__dict__ == exc.__dict__
    assert clone.args == exc.args
    assert str(clone) == str(exc)
    for name in type(exc).__match_args__:
        assert getattr(clone, name) == getattr(exc, name)
    assert clone.__notes__ == ["a note"]


@pytest.mark.parametrize("exc", INSTANCES, ids=lambda e: type(e).__name__)
def test_deepcopy_keeps_fields(exc: SnakepitError) -> None:
    clone = copy.deepcopy(exc)
    assert type(clone) is type(exc)
    assert clone.fields == exc.fields


@pytest.mark.parametrize("exc", INSTANCES, ids=lambda e: type(e).__name__)
def test_match_args_name_real_attributes(exc: SnakepitError) -> None:
    match_args = type(exc).__match_args__
    assert match_args
    for name in match_args:
        assert hasattr(exc, name)
    assert hasattr(exc, "suggestion")


def test_hierarchy_shape() -> None:
    assert issubclass(SnakepitError, Exception)
    assert issubclass(OutOfMemoryError, DeviceError)
    assert issubclass(DeviceMismatchError, DeviceError)
    assert issubclass(DeviceNotAvailableError, DeviceError)
    assert issubclass(WorkerCrashedError, WorkerError)
    assert issubclass(WorkerTimeoutError, WorkerError)
    assert issubclass(WorkerUnavailableError, WorkerError)
    assert issubclass(WorkerStartError, WorkerError)
    assert issubclass(SessionLostError, WorkerError)
    # Not a crash: the retry policy must never retry a call because its session was lost.
    assert not issubclass(SessionLostError, WorkerCrashedError)
    assert issubclass(InvalidDescriptorError, SharedMemoryError)
    assert issubclass(SharedMemoryExhaustedError, SharedMemoryError)
    assert issubclass(SharedMemoryCapError, SharedMemoryExhaustedError)
    for cls in _public_error_classes():
        assert issubclass(cls, SnakepitError)


def test_match_statement_on_structured_fields() -> None:
    def describe(exc: SnakepitError) -> str:
        match exc:
            case ShapeError((_, k), (k2, _), "matmul") if k != k2:
                return f"inner {k} vs {k2}"
            case OutOfMemoryError(device, requested):
                return f"oom {device} {requested}"
            case WorkerCrashedError("segfault", sig):
                return f"segv {sig}"
            case CircuitOpenError(name, after):
                return f"open {name} {after}"
            case _:
                return "other"

    assert describe(ShapeError(shape_a=(3, 4), shape_b=(2, 2), operation="matmul")) == (
        "inner 4 vs 2"
    )
    assert describe(OutOfMemoryError(device="cuda:0", requested=5)) == "oom cuda:0 5"
    assert describe(WorkerCrashedError(exit_kind="segfault", signal=11)) == "segv 11"
    assert describe(CircuitOpenError(circuit="global", retry_after=3.0)) == "open global 3.0"
    assert describe(DtypeError(expected="a", got="b")) == "other"


def test_str_includes_suggestion_and_repr_lists_fields() -> None:
    exc = SnakepitError("it broke", suggestion="turn it off and on")
    assert str(exc) == "it broke\nSuggestion: turn it off and on"
    assert str(SnakepitError("plain")) == "plain"
    shape = ShapeError(shape_a=(3, 4), shape_b=(3, 4), operation="matmul")
    assert repr(shape) == "ShapeError(shape_a=(3, 4), shape_b=(3, 4), operation='matmul')"
    assert "b.T" in str(shape)


def test_default_messages_are_built_from_fields() -> None:
    assert "(3, 4) vs (2, 2)" in ShapeError(shape_a=[3, 4], shape_b=[2, 2]).message
    oom = OutOfMemoryError(device="cuda:0", requested=2 * GIB, available=GIB)
    assert "2.00 GiB" in oom.message
    assert "1.00 GiB free" in oom.message
    crash = WorkerCrashedError(exit_kind="abort", signal=6, worker_id=3)
    assert crash.message == "worker 3 crashed: abort (signal 6)"
    assert WorkerTimeoutError(timeout=2).message == "call on worker timed out after 2 s"
    assert "retry in 1.50 s" in CircuitOpenError(circuit="global", retry_after=1.5).message


def test_explicit_message_and_suggestion_win() -> None:
    exc = DtypeError("custom", expected="int8", got="int64", suggestion="mine")
    assert exc.message == "custom"
    assert exc.suggestion == "mine"
    assert exc.args == ("custom",)


def test_suggestions_are_concrete() -> None:
    assert "astype(numpy.float32)" in (
        DtypeError(expected="float32", got="float64").suggestion or ""
    )
    assert ".to('cuda:0')" in (DeviceMismatchError(devices=["cpu", "cuda:0"]).suggestion or "")
    gpu_oom = OutOfMemoryError(device="cuda:0", requested=3 * GIB, available=GIB).suggestion or ""
    assert "batch size" in gpu_oom
    assert "empty_cache" in gpu_oom
    assert "2.00 GiB larger" in gpu_oom
    cpu_oom = OutOfMemoryError(device="cpu").suggestion or ""
    assert "empty_cache" not in cpu_oom
    assert "chunks" in cpu_oom
    assert "OOM killer" in (WorkerCrashedError(exit_kind="killed").suggestion or "")
    assert "a.T @ b" in (
        ShapeError(shape_a=(4, 3), shape_b=(4, 5), operation="matmul").suggestion or ""
    )


@pytest.mark.parametrize(
    ("shape_a", "shape_b", "operation", "dimension", "expected"),
    [
        ((3, 4), (2, 2), "matmul", None, "a.shape[-1] = 4 != b.shape[-2] = 2"),
        ((3, 4), (2, 2), "matmul", None, "no transpose fits"),
        ((8, 16), (32, 16), "matmul", None, "a @ b.T (or b.transpose(-2, -1)) has shape (8, 32)"),
        ((2, 3), (4, 2), "matmul", None, "b @ a has shape (4, 3)"),
        ((3, 4), (2,), "mv", None, "4 != 2"),
        ((2, 4), (2, 5), "bmm", None, "should be [2, 4] but are [2, 5]"),
        ((10,), (2, 3), "reshape", None, "10 elements cannot be reshaped to (2, 3) (6 elements)"),
        ((10,), (3, -1), "reshape", None, "multiply to 3, which does not divide 10"),
        (None, None, "view", None, ".contiguous()"),
        ((4,), (5,), "concatenate", 1, "4 vs 5 at dimension 1"),
        ((3, 4), (3, 5), "stack", None, "(3, 4) vs (3, 5)"),
        ((8, 3, 3, 3), (1, 4, 10, 10), "conv", 1, "expects 3 input channels but the input has 4"),
        ((2,), (3,), "length", None, "different lengths (2 vs 3)"),
        ((4,), (3,), "features", 1, "expects 3 features but the input has 4"),
        ((4, 2), None, "ndim", None, "reshape(-1, 1)"),
        ((0, 2), None, "samples", None, "no samples (shape (0, 2))"),
        (None, None, "linalg", None, "square"),
        ((4,), (5,), "broadcast", 1, "sizes 4 and 5 differ at dimension 1"),
        ((3, 4), (2, 2), "broadcast", None, "cannot be broadcast"),
    ],
)
def test_shape_suggestions_name_the_numbers(
    shape_a: tuple[int, ...] | None,
    shape_b: tuple[int, ...] | None,
    operation: str,
    dimension: int | None,
    expected: str,
) -> None:
    exc = ShapeError(shape_a=shape_a, shape_b=shape_b, operation=operation, dimension=dimension)
    assert expected in (exc.suggestion or "")


@pytest.mark.parametrize(
    ("expected", "got", "wanted"),
    [
        ("int64", "float64", "cast the float64 operand to int64: x.astype(numpy.int64)"),
        ("numeric", "str", "convert the str operand to numeric"),
        (None, "int64", "int64 is not supported here"),
        (None, None, "one common dtype"),
    ],
)
def test_dtype_suggestions(expected: str | None, got: str | None, wanted: str) -> None:
    assert wanted in (DtypeError(expected=expected, got=got).suggestion or "")


@pytest.mark.parametrize(
    ("framework", "device", "lever"),
    [
        ("torch", "cuda:0", "expandable_segments"),
        ("jax", "gpu", "XLA_PYTHON_CLIENT_PREALLOCATE=false"),
        ("cupy", "cuda", "free_all_blocks()"),
        ("numpy", "cpu", "chunks"),
    ],
)
def test_oom_suggestions_per_framework(framework: str, device: str, lever: str) -> None:
    exc = OutOfMemoryError(
        device=device, requested=3 * GIB, available=GIB, total=8 * GIB, framework=framework
    )
    suggestion = exc.suggestion or ""
    assert lever in suggestion
    assert "asked for 3.00 GiB with 1.00 GiB free of 8.00 GiB" in suggestion


def test_shape_error_shapes_default_to_the_pair() -> None:
    assert ShapeError(shape_a=(3,), shape_b=(4,)).shapes == ((3,), (4,))
    assert ShapeError(shape_a=(3,)).shapes == ((3,),)
    assert ShapeError(shapes=[[1, 2], [3]]).shapes == ((1, 2), (3,))


def test_pool_closed_is_a_runtime_error_and_unavailable() -> None:
    exc = PoolClosedError()
    assert isinstance(exc, RuntimeError)
    assert isinstance(exc, WorkerUnavailableError)
    assert exc.reason == "the pool was shut down"
    with pytest.raises(RuntimeError, match="shut down"):
        raise exc


def test_worker_crashed_accepts_str_enum_exit_kind() -> None:
    import enum

    class Kind(str, enum.Enum):
        segfault = "segfault"

    exc = WorkerCrashedError(exit_kind=Kind.segfault)
    assert exc.exit_kind == "segfault"
    assert type(exc.exit_kind) is str


def test_serialization_direction_is_validated() -> None:
    with pytest.raises(ValueError, match="direction"):
        SerializationError(direction="sideways")


def test_circuit_retry_after_never_negative() -> None:
    assert CircuitOpenError(circuit="c", retry_after=-3.0).retry_after == 0.0


# ------------------------------------------------------------ remote classes


def test_remote_class_is_catchable_as_builtin_and_cached() -> None:
    cls = remote_class(PythonError, KeyError)
    assert cls.__name__ == "RemoteKeyError"
    assert remote_class(PythonError, KeyError) is cls
    exc = cls("'k'", python_type="KeyError")
    assert isinstance(exc, KeyError)
    assert isinstance(exc, PythonError)
    with pytest.raises(KeyError):
        raise exc


def test_remote_class_pickles_through_base_and_builtin() -> None:
    exc = remote_class(ShapeError, ValueError)(shape_a=(1,), shape_b=(2,), operation="broadcast")
    exc.add_note("remote tb")
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert isinstance(clone, ValueError)
    assert isinstance(clone, ShapeError)
    assert clone.shape_b == (2,)
    assert clone.__notes__ == ["remote tb"]


@pytest.mark.parametrize(
    "builtin",
    [AttributeError, OSError, FileNotFoundError, ImportError, MemoryError, ZeroDivisionError],
)
def test_remote_class_handles_builtins_with_own_layout(builtin: type[Exception]) -> None:
    exc = remote_class(PythonError, builtin)("msg", python_type=builtin.__name__)
    assert isinstance(exc, builtin)
    assert str(exc) == f"{builtin.__name__}: msg"
    assert isinstance(pickle.loads(pickle.dumps(exc)), builtin)


def test_remote_class_falls_back_for_unmixable_or_foreign_types() -> None:
    assert remote_class(PythonError, None) is PythonError
    assert remote_class(PythonError, Exception) is PythonError
    assert remote_class(PythonError, StopIteration) is PythonError

    class ForeignError(Exception):
        pass

    assert remote_class(PythonError, ForeignError) is PythonError


def test_builtin_exception_type_lookup() -> None:
    assert builtin_exception_type("KeyError") is KeyError
    assert builtin_exception_type("UnicodeDecodeError") is UnicodeError
    assert builtin_exception_type("StopIteration") is None
    assert builtin_exception_type("Exception") is None
    assert builtin_exception_type("NoSuchThing") is None
    assert builtin_exception_type("KeyboardInterrupt") is None


# ------------------------------------------------------------------ registry


def _all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_class_is_registered_once_under_its_name() -> None:
    registry = registered_classes()
    assert set(registry) == {cls.__name__ for cls in registry.values()}
    assert len(set(registry.values())) == len(registry)
    # Every class of the package is in it, except the mixed "catchable as
    # KeyError" classes, which records rebuild from their base.
    static = {SnakepitError} | {
        cls for cls in _all_subclasses(SnakepitError) if cls.__module__ == "snakepit.errors"
    }
    for cls in static - set(registry.values()):
        base, builtin = cls.__bases__
        assert registry[base.__name__] is base
        assert builtin.__module__ == "builtins"
    assert set(registry.values()) == _public_error_classes()


def test_record_transport_knows_every_class() -> None:
    # Records name their class; the transport looks it up in the registry.
    assert set(_remote._HIERARCHY.values()) == _public_error_classes()
    for name, cls in _remote._HIERARCHY.items():
        assert getattr(errors, name) is cls
        assert cls.__module__ == "snakepit.errors"  # shown and pickled under the public home


@pytest.mark.parametrize("exc", INSTANCES, ids=lambda e: type(e).__name__)
def test_every_class_comes_back_from_a_record_as_itself(exc: SnakepitError) -> None:
    record = _remote.exception_to_record(exc)
    assert record["snakepit"]["class"] == type(exc).__name__  # type: ignore[index]
    assert type(_remote.record_to_exception(record)) is type(exc)


def test_a_second_class_of_the_same_name_is_refused() -> None:
    with pytest.raises(TypeError, match="ShapeError"):

        @error_class
        class ShapeError(SnakepitError):
            pass

    assert registered_classes()["ShapeError"] is errors.ShapeError


def test_fields_are_normalised_at_construction() -> None:
    shape = ShapeError(shape_a=[3, 4], shape_b=[2.0, 2], dimension="1")  # type: ignore[arg-type]
    assert shape.shape_a == (3, 4)
    assert shape.shape_b == (2, 2)
    assert shape.dimension == 1
    assert shape.shapes == ((3, 4), (2, 2))
    assert DeviceMismatchError(devices=["cpu", "cuda:1"]).devices == ("cpu", "cuda:1")  # type: ignore[arg-type]
    assert WorkerError(worker_id=3.0).worker_id == 3  # type: ignore[arg-type]
    assert OutOfMemoryError(requested="10").requested == 10  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected an int"):
        WorkerError(worker_id=[1])  # type: ignore[arg-type]
    assert PythonError(python_type="KeyError").qualified_type == "builtins.KeyError"
    assert SharedMemoryExhaustedError(requested=2, available=1).hint.startswith("release")
