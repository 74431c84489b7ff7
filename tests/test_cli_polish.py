"""The console command's own text: ``--version`` and markup-free ``--help``."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from snakepit import cli
from snakepit._version import __version__

#: reST or Markdown markup that argparse would print literally.
MARKUP = re.compile(r"``|:[a-z]+:`|`[^`\s][^`]*`")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_version_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakepit", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"snakepit {__version__}"


@pytest.mark.parametrize("parser", _parsers(cli.build_parser()), ids=lambda p: p.prog)
def test_help_has_no_raw_markup(parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    assert not MARKUP.search(text), MARKUP.search(text)


def test_every_subcommand_has_help() -> None:
    text = cli.build_parser().format_help()
    for command in ("demo", "doctor", "hardware", "gc", "bench"):
        assert re.search(rf"^\s+{command}\s+\S", text, re.MULTILINE), text


def test_every_option_says_what_it_does() -> None:
    for parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, f"{parser.prog} {action.option_strings} has no help"
