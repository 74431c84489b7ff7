"""A no-op in a module that imports numpy, as the modules of ML code do.

A peer's worker imports the module of the function it runs: loky's workers
running :func:`noop` import numpy first, as they did in the side-by-side
run whose figures the start-up goal comes from (its no-op lived in a script
that imports numpy). :mod:`snakepit._bench.tasks` imports no numpy, so a
no-op from there measures a pool that needs none.
"""

from __future__ import annotations

import numpy

__all__ = ["noop"]

#: The import is the point; a name of it keeps linters from dropping it.
NUMPY_VERSION = numpy.__version__


def noop() -> None:
    """Nothing, after its module imported numpy."""
