"""Worker-side functions for the output-labelling tests."""

from __future__ import annotations

import sys


def chatter(index: int) -> int:
    print(f"item {index} starts")
    sys.stdout.write(f"item {index} half")
    sys.stdout.write(" and half\n")
    print(f"item {index}", "ends")
    print(f"item {index} to stderr", file=sys.stderr)
    return index
