"""Tests for ``snakepit._util``: the one byte formatter and the string-enum base."""

from __future__ import annotations

import ast
import enum
import json
from pathlib import Path

import pytest

from snakepit import _util
from snakepit._util import StrEnum, format_bytes

GIB = 1 << 30


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "unknown"),
        (0, "0 bytes"),
        (1, "1 bytes"),
        (1023, "1023 bytes"),
        (512.0, "512 bytes"),
        (-5, "-5 bytes"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (64 << 20, "64.00 MiB"),
        (int(40.09 * GIB), "40.09 GiB"),
        (3 * GIB, "3.00 GiB"),
        (-3 * GIB, "-3.00 GiB"),
        (2 << 40, "2.00 TiB"),
        (8 << 50, "8.00 PiB"),
        (5 << 60, "5120.00 PiB"),  # no unit past PiB: the count grows instead
    ],
)
def test_format_bytes(n: float | None, text: str) -> None:
    assert format_bytes(n) == text


class Colour(StrEnum):
    red = "red"
    dark_blue = "dark_blue"


def test_str_enum_members_are_their_values() -> None:
    assert Colour.red == "red"
    assert isinstance(Colour.red, str)
    assert str(Colour.dark_blue) == "dark_blue"
    assert f"{Colour.dark_blue}" == "dark_blue"
    assert f"{Colour.red:>5}" == "  red"
    assert Colour("red") is Colour.red
    assert json.dumps({"c": Colour.red}) == '{"c": "red"}'
    assert {"red": 1}[Colour.red] == 1  # hashes as its value
    assert issubclass(Colour, enum.Enum)


def test_util_imports_nothing_from_snakepit() -> None:
    # Every layer may use it, so it must not pull any of them in.
    tree = ast.parse(Path(_util.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "snakepit"}


def test_lazy_names_load_once_and_refuse_unknown_ones() -> None:
    namespace: dict[str, object] = {"__all__": ["dumps"], "here": 1}
    getattr_, dir_ = _util.lazy_names("pkg", {"dumps": "json"}, namespace)
    assert getattr_("dumps") is json.dumps
    assert namespace["dumps"] is json.dumps  # later lookups skip __getattr__
    assert dir_() == ["__all__", "dumps", "here"]
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'loads'"):
        getattr_("loads")
