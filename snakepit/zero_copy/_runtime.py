"""The private face of ``zero_copy`` for snakepit's own runtime.

The wire layer (codec), the worker process and the pool use these; user code
has no need of them. One import site keeps that plumbing out of the public
``snakepit.zero_copy``.
"""

import sys

from ._arena import (
    configure,
    install_warm_buffers,
    lend_results,
    results_in_place,
    threshold_bytes,
    zeros,
)
from ._gc import collect_garbage, drop_held_references, prune_mappings
from ._ledger import LEDGER_BYTES, LazyLedger, LeaseLedger
from ._mapping import install_ledger, retain
from ._ref import array_from_ref, describe, drop_transfer_ref, take_transfer_ref, tensor_ref_of

#: ``ref_of`` for the ledger's array (no dispatch needed).
ref_of = tensor_ref_of

#: Longest a worker that ends waits for holders of device memory it exported
#: (within the 2 s a graceful stop gives it by default: terminate_grace + 1).
CUDA_DRAIN_SECONDS = 1.5


#: Where device memory is received and exported: a process that has not
#: loaded it (the CUDA carrier loads it with the first CUDA object) has none.
_CUDA_LEASES = "snakepit.zero_copy._cuda_leases"


def settle_cuda() -> None:
    """See :func:`snakepit.zero_copy._cuda_leases.settle` (nothing before it is loaded)."""
    leases = sys.modules.get(_CUDA_LEASES)
    if leases is not None:
        leases.settle()


def drain_cuda() -> bool:
    """Wait (bounded) until no process holds CUDA memory this one exported."""
    leases = sys.modules.get(_CUDA_LEASES)
    return True if leases is None else bool(leases.drain(CUDA_DRAIN_SECONDS))


__all__ = [
    "LEDGER_BYTES",
    "LazyLedger",
    "LeaseLedger",
    "array_from_ref",
    "collect_garbage",
    "CUDA_DRAIN_SECONDS",
    "configure",
    "describe",
    "drain_cuda",
    "drop_held_references",
    "drop_transfer_ref",
    "install_ledger",
    "install_warm_buffers",
    "lend_results",
    "prune_mappings",
    "ref_of",
    "results_in_place",
    "retain",
    "settle_cuda",
    "take_transfer_ref",
    "threshold_bytes",
    "zeros",
]
