"""The public faces keep their contract: every name exists, is documented and typed.

In psutil's style (``test_contracts.py``): what a user may import is checked
as a user would see it, so a rename, a lost docstring or a missing hint fails
here first.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import snakepit

FACES = [
    "snakepit",
    "snakepit.errors",
    "snakepit.hardware",
    "snakepit.pool",
    "snakepit.telemetry",
    "snakepit.zero_copy",
]


def _public(face: str) -> Iterator[tuple[str, Any]]:
    module = importlib.import_module(face)
    for name in module.__all__:
        yield name, getattr(module, name)


def _pairs() -> list[tuple[str, str]]:
    return [(face, name) for face in FACES for name, _ in _public(face)]


@pytest.mark.parametrize("face", FACES)
def test_faces_have_usage_docstrings_and_unique_names(face: str) -> None:
    module = importlib.import_module(face)
    assert module.__doc__
    assert len(module.__doc__.strip()) > 40
    names = list(module.__all__)
    assert len(names) == len(set(names)), f"{face}.__all__ repeats a name"
    for name in names:
        assert hasattr(module, name), f"{face}.__all__ names {name!r}, which is missing"


@pytest.mark.parametrize(("face", "name"), _pairs())
def test_every_public_name_is_documented(face: str, name: str) -> None:
    value = getattr(importlib.import_module(face), name)
    if not (inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value)):
        return  # constants, type aliases and sub-packages are documented by their face
    assert inspect.getdoc(value), f"{face}.{name} has no docstring"


def _untyped(function: Any) -> list[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []  # builtins and extension types: checked by stubtest instead
    missing = [
        parameter.name
        for parameter in signature.parameters.values()
        if parameter.annotation is inspect.Parameter.empty and parameter.name not in ("self", "cls")
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


@pytest.mark.parametrize(("face", "name"), _pairs())
def test_every_public_function_and_method_is_fully_typed(face: str, name: str) -> None:
    value = getattr(importlib.import_module(face), name)
    if inspect.isfunction(value):
        assert not _untyped(value), f"{face}.{name} lacks hints for {_untyped(value)}"
    elif inspect.isclass(value) and not issubclass(value, BaseException):
        for attr, member in vars(value).items():
            if attr.startswith("_") or not inspect.isfunction(member):
                continue
            assert not _untyped(member), f"{face}.{name}.{attr} lacks hints for {_untyped(member)}"


@pytest.fixture(scope="module")
def pool() -> Iterator[snakepit.Pool]:
    with snakepit.Pool(workers=1) as pool:
        yield pool


def test_pool_methods_return_the_documented_types(pool: snakepit.Pool) -> None:
    assert isinstance(pool.submit(divmod, 7, 2), Future)
    assert pool.call(divmod, 7, 2) == (3, 1)
    view = pool.options(timeout=10)
    assert isinstance(view, snakepit.pool.PoolView)
    assert isinstance(view.call_options, snakepit.pool.CallOptions)
    stats = pool.stats()
    assert all(isinstance(key, str) and isinstance(value, int) for key, value in stats.items())
    assert {"size", "idle", "busy", "queue_depth", "completed", "failed"} <= set(stats)
    health = pool.health()
    assert isinstance(health["workers"], dict)
    pids = pool.worker_pids()
    assert isinstance(pids, list)
    assert all(isinstance(pid, int) for pid in pids)
    assert isinstance(snakepit.__version__, str)
