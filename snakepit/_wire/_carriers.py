"""Every kind of data that travels through shared memory: the one registry.

A new kind is one carrier module (see ``zero_copy/_numpy.py`` for the
protocol), added to :data:`CARRIERS`. The encoder (:mod:`.codec`) and the
decoder (:mod:`._decode`) both read it from here.
"""

from __future__ import annotations

from types import ModuleType

from snakepit.zero_copy import (
    _arrow,  # pyarrow itself is imported on first use only
    _host_arrays,  # JAX and other DLPack CPU arrays, learned when met
    _numpy,
    _torch,  # likewise torch: never imported here
)

from . import _cuda_carrier

__all__ = ["BY_TAG", "CARRIERS", "DESCRIPTOR_MODULE", "TAG_BYTEARRAY", "TAG_BYTES"]

CARRIERS: tuple[ModuleType, ...] = (_numpy, _torch, _arrow, _host_arrays, _cuda_carrier)
#: Each carrier by the tag its descriptors carry.
BY_TAG: dict[str, ModuleType] = {carrier.tag: carrier for carrier in CARRIERS}
#: Persistent ids of large ``bytes`` and ``bytearray`` sent out of band.
TAG_BYTES = "snakepit.bytes"
TAG_BYTEARRAY = "snakepit.bytearray"
#: The module whose ``_shared`` names a descriptor in a pickle (the codec's).
DESCRIPTOR_MODULE = "snakepit._wire.codec"
