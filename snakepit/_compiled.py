"""The pure-Python modules that the build also compiles with Cython.

They are on the path of every call with shared arrays and of every reply
(the flat codec, the compact frames, the packed descriptors). ``setup.py``
compiles each one as it is, with annotations not taken as C types, so the
compiled module behaves as its source; the import system prefers it to the
``.py`` beside it. Built with ``SNAKEPIT_PURE_PYTHON=1``, none is compiled
and the source runs. A module that counts references (``sys.getrefcount``)
does not belong here: compiled code holds references differently.
"""

from __future__ import annotations

COMPILED_MODULES: tuple[str, ...] = (
    "snakepit._wire._compact",
    "snakepit._wire._decode",
    "snakepit._wire._flat",
    "snakepit.zero_copy._packed",
)
