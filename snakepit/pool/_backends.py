"""Where ``Pool(backend=...)`` finds a pool class other than the local one.

The local pool is ``Pool`` itself and never passes through here after its
first check (``backend == "local"``), so its construction and its calls cost
what they did. Any other backend is an object with a ``pool_class()`` method
returning a subclass of ``Pool`` that implements the calls (see
:mod:`snakepit.backends`); a name is looked up in :data:`NAMED`, whose
modules are imported only when that name is asked for (``import snakepit``
never imports ray).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["NAMED", "BackendLike", "pool_class_for", "resolve"]

#: Backend name -> (module, class): the class is built with no arguments.
NAMED: dict[str, tuple[str, str]] = {"ray": ("snakepit.backends", "RayBackend")}


class BackendLike(Protocol):
    """What ``Pool(backend=...)`` accepts besides ``"local"``."""

    #: The backend's name in telemetry metadata and reprs.
    name: str

    def pool_class(self) -> type[Pool]:
        """The ``Pool`` subclass that runs this backend's calls."""
        ...


def resolve(backend: object) -> BackendLike:
    """The backend object for ``backend`` (a name from :data:`NAMED` or an object)."""
    if isinstance(backend, str):
        entry = NAMED.get(backend)
        if entry is None:
            known = ", ".join(sorted({"local", *NAMED}))
            raise ValueError(f"unknown backend {backend!r}; known: {known}")
        cls: Any = getattr(importlib.import_module(entry[0]), entry[1])
        made: BackendLike = cls()
        return made
    if not callable(getattr(backend, "pool_class", None)):
        raise TypeError(
            f"backend must be 'local', 'ray' or a backend object (such as "
            f"snakepit.backends.RayBackend(...)), not {backend!r}"
        )
    given: BackendLike = backend  # type: ignore[assignment]
    return given


def pool_class_for(backend: object) -> type[Pool]:
    """The ``Pool`` subclass that runs calls on ``backend``."""
    return resolve(backend).pool_class()
