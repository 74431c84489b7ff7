"""Property tests: the worker-side extractor never raises, whatever it is given.

A worker that fails while describing a failure loses the user's error, so
``exception_to_record`` must survive hostile exceptions: broken ``__str__``
and ``__repr__``, huge or non-UTF-8 messages, cyclic cause chains,
``BaseException`` subclasses, odd ``args`` and ``__notes__``. Its records
must stay plain data that JSON, UTF-8 and pickle accept, and the supervisor
must turn every one of them back into a printable snakepit error.
"""

from __future__ import annotations

import json
import pickle
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snakepit.errors import ShapeError, SnakepitError
from snakepit.errors._parse import parse_context
from snakepit.errors._remote import exception_to_record, record_to_exception

# Some examples are megabyte messages on purpose; hypothesis warns when it
# builds a repr of them for its own reports. That cost is the test's, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
any_text = st.text(st.characters(exclude_categories=[]))
texts = st.one_of(
    any_text,
    surrogates,
    st.builds(lambda a, b: a + b, any_text, surrogates),
    st.sampled_from(
        [
            "",
            "x" * 1_000_000,  # far past the message limit
            "(" * 50_000 + "3,4" + " " * 50_000,  # pathological for the shape patterns
            "mat1 and mat2 shapes cannot be multiplied (3x4 and 2x2)" * 1000,
            "CUDA out of memory. Tried to allocate 1e308 GiB",
            "Tried to allocate 99999999999999999999999999999999999999999 bytes",
            "operands could not be broadcast together with shapes " + "(1,2) " * 5000,
        ]
    ),
)


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


arg_values = st.one_of(
    texts,
    st.integers(),
    st.just(10**5000),  # str() refuses ints this long (Python >= 3.11)
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(),
    st.none(),
    st.builds(Unprintable),
    st.lists(st.integers(), max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)


class BaseSignal(BaseException):
    pass


class BrokenStrError(Exception):
    def __str__(self) -> str:
        raise ValueError("broken __str__")


class BrokenBothError(Exception):
    def __str__(self) -> str:
        raise ValueError("broken __str__")

    def __repr__(self) -> str:
        raise ValueError("broken __repr__")


class StrSubclass(str):
    pass


class OddStrError(Exception):
    def __str__(self) -> str:
        return StrSubclass("a str subclass")


class HostileError(Exception):
    """Every attribute access but a few raises."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"__class__", "__dict__", "args", "with_traceback"}:
            return super().__getattribute__(name)
        raise RuntimeError(f"no {name} for you")


class StrangeModuleError(Exception):
    pass


StrangeModuleError.__module__ = 42  # type: ignore[assignment]

KINDS: list[type[BaseException]] = [
    Exception,
    ValueError,
    KeyError,
    RuntimeError,
    MemoryError,
    OSError,
    RecursionError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    BaseException,
    BaseSignal,
    BrokenStrError,
    BrokenBothError,
    OddStrError,
    HostileError,
    StrangeModuleError,
]


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    """One exception at the head of a possibly cyclic chain of others."""
    count = draw(st.integers(1, 12))
    chain: list[BaseException] = []
    for _ in range(count):
        kind = draw(st.sampled_from(KINDS))
        args = draw(st.lists(arg_values, max_size=3))
        exc = kind(*args)
        if draw(st.booleans()):
            exc = _raise(exc)
        notes = draw(
            st.one_of(
                st.none(),
                st.lists(st.one_of(texts, st.integers(), st.binary()), max_size=3),
                st.integers(),
                texts,
            )
        )
        if notes is not None and not isinstance(exc, HostileError):
            exc.__notes__ = notes  # type: ignore[attr-defined]
        chain.append(exc)
    for exc in chain:
        if isinstance(exc, HostileError):
            continue
        link = draw(st.one_of(st.none(), st.integers(0, count - 1)))  # may point back: a cycle
        if link is not None:
            if draw(st.booleans()):
                exc.__cause__ = chain[link]
            else:
                exc.__context__ = chain[link]
                exc.__suppress_context__ = draw(st.booleans())
    return chain[0]


def _check_record(record: dict[str, object]) -> None:
    assert isinstance(record, dict)
    encoded = json.dumps(record)  # plain data only...
    encoded.encode("utf-8")  # ...and no lone surrogates left
    assert json.loads(encoded) == record
    assert pickle.loads(pickle.dumps(record)) == record
    message = record["message"]
    assert isinstance(message, str)
    assert len(message) <= 20_100
    causes = record.get("causes", [])
    assert isinstance(causes, list)
    assert len(causes) <= 8


def _check_rebuilt(record: dict[str, object]) -> None:
    exc = record_to_exception(json.loads(json.dumps(record)))
    assert isinstance(exc, SnakepitError)
    str(exc)
    repr(exc)
    "".join(traceback.format_exception(exc))
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)


@SETTINGS
@given(exceptions())
def test_extractor_never_raises(exc: BaseException) -> None:
    record = exception_to_record(exc)
    _check_record(record)
    _check_rebuilt(record)


@SETTINGS
@given(texts, st.sampled_from(["RuntimeError", "MemoryError", "ValueError", None]))
def test_parser_never_raises_and_stays_plain(message: str, python_type: str | None) -> None:
    context = parse_context(message, python_type, qualified_type="torch.OutOfMemoryError")
    json.dumps(context)


@SETTINGS
@given(
    st.lists(st.lists(st.integers(0, 2**40), max_size=6).map(tuple), max_size=4),
    st.one_of(st.none(), st.sampled_from(["matmul", "bmm", "reshape", "conv", "length", "x"])),
    st.one_of(st.none(), st.integers(-5, 5)),
)
def test_shape_errors_round_trip_whatever_the_fields(
    shapes: list[tuple[int, ...]], operation: str | None, dimension: int | None
) -> None:
    a = shapes[0] if shapes else None
    b = shapes[1] if len(shapes) > 1 else None
    exc = ShapeError(shape_a=a, shape_b=b, operation=operation, dimension=dimension, shapes=shapes)
    assert exc.suggestion
    record = exception_to_record(_raise(exc))
    _check_record(record)
    back = record_to_exception(record)
    assert isinstance(back, ShapeError)
    assert back.shapes == tuple(shapes)
    assert (back.shape_a, back.shape_b, back.operation) == (a, b, operation)


@SETTINGS
@given(
    st.recursive(
        st.none() | st.integers() | texts, lambda c: st.lists(c) | st.dictionaries(texts, c)
    )
)
def test_supervisor_never_raises_on_garbage(record: Any) -> None:
    exc = record_to_exception(record)
    assert isinstance(exc, SnakepitError)
    str(exc)


def test_escaped_surrogates_do_not_push_a_message_past_its_limit() -> None:
    # Found by test_extractor_never_raises: escaping a lone surrogate turns one
    # character into six, so bounding the text before escaping it was not enough.
    record = exception_to_record(OSError("\ud800" * 13, "x" * 1_000_000))
    _check_record(record)
    record = exception_to_record(ValueError("\udcff" * 100_000))
    _check_record(record)
