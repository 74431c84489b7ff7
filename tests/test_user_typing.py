"""A user's mypy sees the types of pool calls and flags wrong arguments."""

from __future__ import annotations

from tests.typecheck import check_user_types


def test_user_scripts_type_check_as_expected() -> None:
    assert check_user_types.check() == []


def test_expectation_markers_are_read() -> None:
    # The bad script is only a test if its markers are found.
    marked = check_user_types.expected_errors(check_user_types.HERE / "user_bad.py")
    assert len(marked) == 5
    assert {code for _, code in marked} == {"call-overload", "call-arg", "assignment"}
