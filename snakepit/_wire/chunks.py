"""Chunks of a ``Pool.map``: many items in one call, an outcome per item.

The supervisor sends ``run_chunk(fn, columns)`` as one call: one list per
iterable of the map, so a chunk of plain items is a few flat lists that the
codec pickles without any hook, and ``fn`` by its ``"module:qualname"``
where it has one. The worker runs every item and answers with one list, in
which an item that raised stands as an :class:`ItemError` holding the
error's record (the record a failed call sends), so the caller sees each
item's own typed error at its place and the other items' results around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from snakepit._wire._pickling import resolve
from snakepit.errors._remote import exception_to_record

__all__ = ["RUN_CHUNK", "ItemError", "run_chunk"]

#: How the supervisor names :func:`run_chunk` to a worker.
RUN_CHUNK = "snakepit._wire.chunks:run_chunk"


@dataclass(frozen=True, slots=True)
class ItemError:
    """One item of a chunk raised: its error's record (see snakepit.errors)."""

    record: dict[str, object]


def run_chunk(fn: Callable[..., Any] | str, columns: Sequence[Sequence[Any]]) -> list[Any]:
    """``[fn(*args) for args in zip(*columns)]``, each failed item an ItemError.

    Only ``Exception`` is kept per item: ``SystemExit``, ``KeyboardInterrupt``
    and the like end the whole call, as they end a plain one.
    """
    function: Callable[..., Any] = resolve(fn) if isinstance(fn, str) else fn
    results: list[Any] = []
    for args in zip(*columns, strict=True):
        try:
            results.append(function(*args))
        except Exception as exc:
            results.append(ItemError(exception_to_record(exc)))
    return results
