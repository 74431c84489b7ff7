"""Sets a short default socket timeout when imported (a worker template's
preload) or when its initializer runs (in a worker)."""

from __future__ import annotations

import socket

TIMEOUT = 0.05

socket.setdefaulttimeout(TIMEOUT)


def set_default_timeout() -> None:
    socket.setdefaulttimeout(TIMEOUT)


def default_timeout() -> float | None:
    return socket.getdefaulttimeout()
