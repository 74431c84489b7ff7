"""Fixtures shared by the wire-layer tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected socket pair, closed after the test."""
    left, right = socket.socketpair()
    try:
        yield left, right
    finally:
        left.close()
        right.close()
