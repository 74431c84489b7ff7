"""``snakepit.errors.configure``: what a remote error shows."""

from __future__ import annotations

import dataclasses
import pickle
import traceback
from collections.abc import Iterator

import pytest

from snakepit import errors
from snakepit.errors import ErrorSettings, PythonError, RemoteTraceback, ShapeError, configure
from snakepit.errors._remote import exception_to_record, record_to_exception


@pytest.fixture(autouse=True)
def _restore_settings() -> Iterator[None]:
    previous = errors.settings()
    yield
    configure(**dataclasses.asdict(previous))


def _remote_key_error() -> PythonError:
    def lookup() -> None:
        {}["missing"]

    try:
        lookup()
    except KeyError as exc:
        result = record_to_exception(exception_to_record(exc))
    assert isinstance(result, PythonError)
    return result


def test_defaults_show_everything() -> None:
    assert errors.settings() == ErrorSettings(show_remote_traceback=True, show_suggestions=True)
    exc = _remote_key_error()
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "in lookup" in "".join(traceback.format_exception(exc))


def test_configure_returns_previous_and_none_keeps() -> None:
    before = configure(show_suggestions=False)
    assert before == ErrorSettings(True, True)
    assert configure() == ErrorSettings(show_remote_traceback=True, show_suggestions=False)
    assert configure(show_remote_traceback=False) == ErrorSettings(True, False)
    assert errors.settings() == ErrorSettings(False, False)
    configure(**dataclasses.asdict(before))
    assert errors.settings() == before


def test_suggestions_hidden_from_str_at_once() -> None:
    exc = ShapeError(shape_a=(3, 4), shape_b=(2, 2), operation="matmul")
    assert "Suggestion:" in str(exc)
    configure(show_suggestions=False)
    assert str(exc) == exc.message  # existing errors follow the setting immediately
    assert exc.suggestion  # still there for programs
    remote = _remote_key_error()
    remote.suggestion = "look elsewhere"
    assert str(remote) == "KeyError: 'missing'"
    configure(show_suggestions=True)
    assert str(remote).endswith("Suggestion: look elsewhere")


def test_remote_traceback_can_be_left_out() -> None:
    configure(show_remote_traceback=False)
    exc = _remote_key_error()
    assert exc.__cause__ is None
    assert exc.remote_traceback is not None  # kept for programs
    assert "in lookup" in exc.remote_traceback
    printed = "".join(traceback.format_exception(exc))
    assert "in lookup" not in printed
    assert "direct cause" not in printed


def test_unpickling_follows_the_setting() -> None:
    exc = _remote_key_error()
    data = pickle.dumps(exc)
    assert isinstance(pickle.loads(data).__cause__, RemoteTraceback)
    configure(show_remote_traceback=False)
    assert pickle.loads(data).__cause__ is None


def test_remote_traceback_renders_like_concurrent_futures() -> None:
    text = "Traceback (most recent call last):\n  File 'w.py', line 1\nKeyError: 'k'\n"
    shown = str(RemoteTraceback(text=text))
    assert shown == f'\n"""\n{text.rstrip()}\n"""'
    assert RemoteTraceback(text=text).__cause__ is None  # never chains to itself


def test_errors_built_with_a_remote_traceback_chain_it() -> None:
    # The pool builds crash errors with the worker's faulthandler output.
    exc = errors.WorkerCrashedError(exit_kind="segfault", remote_traceback="Fatal Python error")
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert exc.__cause__.text == "Fatal Python error"
    configure(show_remote_traceback=False)
    assert errors.WorkerCrashedError(remote_traceback="x").__cause__ is None
