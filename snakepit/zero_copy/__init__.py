"""Zero-copy data between processes: POSIX shared memory, Arrow streams, CUDA IPC.

::

    import snakepit
    from snakepit import zero_copy

    array = zero_copy.empty((1024, 1024), "float32")  # allocated in shared memory
    shared = zero_copy.share(existing)    # one copy in: numpy, torch CPU, Arrow
    ref = zero_copy.ref_of(shared)        # a small picklable descriptor
    view = zero_copy.from_ref(ref)        # in another process: no copy
    zero_copy.is_shared(view)             # True
    ref.release()                         # drop this process's reference

    zero_copy.configure(threshold_bytes=1 << 20, cap_bytes=8 << 30)
    zero_copy.arena_stats(), zero_copy.shm_space(), zero_copy.collect_garbage()

A pool sends shared objects as descriptors and copies other large arrays,
tensors and tables into shared memory once; most code never calls these
verbs. Kind-specific names (``share_table``, ``arrow_ref_of``,
``table_from_ref``, ``share_tensor``, ``export_cuda``, ``open_cuda``) remain
as aliases. Details: ``docs/zero-copy.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snakepit._util import lazy_names

if TYPE_CHECKING:
    from ._arena import (
        arena_stats,
        cap_bytes,
        configure,
        empty,
        reclaim,
        shm_space,
        threshold_bytes,
        trim,
        zeros,
    )
    from ._arrow import ArrowRef, arrow_ref_of, is_shared_table, share_table, table_from_ref
    from ._cuda import (
        CudaBuffer,
        CudaIPCTensor,
        GPUTensorRef,
        cuda_driver,
        export_cuda,
        memory_kind,
        open_cuda,
        synchronize_cuda,
    )
    from ._cuda_arrays import CudaArray
    from ._cuda_memory import export_cuda_copy
    from ._dtypes import BFLOAT16, SUPPORTED_DTYPES
    from ._gc import collect_garbage, list_regions
    from ._ref import TensorRef, block_refcount, release_ref
    from ._torch import share_tensor
    from ._verbs import from_dlpack, from_ref, is_shared, ref_of, share

# Names load on first use (PEP 562): a worker that never meets an array
# imports neither these modules nor numpy.
#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "ArrowRef": "snakepit.zero_copy._arrow",
    "BFLOAT16": "snakepit.zero_copy._dtypes",
    "CudaArray": "snakepit.zero_copy._cuda_arrays",
    "CudaBuffer": "snakepit.zero_copy._cuda",
    "CudaIPCTensor": "snakepit.zero_copy._cuda",
    "GPUTensorRef": "snakepit.zero_copy._cuda",
    "SUPPORTED_DTYPES": "snakepit.zero_copy._dtypes",
    "TensorRef": "snakepit.zero_copy._ref",
    "arena_stats": "snakepit.zero_copy._arena",
    "arrow_ref_of": "snakepit.zero_copy._arrow",
    "block_refcount": "snakepit.zero_copy._ref",
    "cap_bytes": "snakepit.zero_copy._arena",
    "collect_garbage": "snakepit.zero_copy._gc",
    "configure": "snakepit.zero_copy._arena",
    "cuda_driver": "snakepit.zero_copy._cuda",
    "empty": "snakepit.zero_copy._arena",
    "export_cuda": "snakepit.zero_copy._cuda",
    "export_cuda_copy": "snakepit.zero_copy._cuda_memory",
    "from_dlpack": "snakepit.zero_copy._verbs",
    "from_ref": "snakepit.zero_copy._verbs",
    "is_shared": "snakepit.zero_copy._verbs",
    "is_shared_table": "snakepit.zero_copy._arrow",
    "list_regions": "snakepit.zero_copy._gc",
    "memory_kind": "snakepit.zero_copy._cuda",
    "open_cuda": "snakepit.zero_copy._cuda",
    "reclaim": "snakepit.zero_copy._arena",
    "ref_of": "snakepit.zero_copy._verbs",
    "release_ref": "snakepit.zero_copy._ref",
    "share": "snakepit.zero_copy._verbs",
    "share_table": "snakepit.zero_copy._arrow",
    "share_tensor": "snakepit.zero_copy._torch",
    "shm_space": "snakepit.zero_copy._arena",
    "synchronize_cuda": "snakepit.zero_copy._cuda",
    "table_from_ref": "snakepit.zero_copy._arrow",
    "threshold_bytes": "snakepit.zero_copy._arena",
    "trim": "snakepit.zero_copy._arena",
    "zeros": "snakepit.zero_copy._arena",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "BFLOAT16",
    "SUPPORTED_DTYPES",
    "ArrowRef",
    "CudaArray",
    "CudaBuffer",
    "CudaIPCTensor",
    "GPUTensorRef",
    "TensorRef",
    "arena_stats",
    "arrow_ref_of",
    "block_refcount",
    "cap_bytes",
    "collect_garbage",
    "configure",
    "cuda_driver",
    "empty",
    "export_cuda",
    "export_cuda_copy",
    "from_dlpack",
    "from_ref",
    "is_shared",
    "is_shared_table",
    "list_regions",
    "memory_kind",
    "open_cuda",
    "ref_of",
    "reclaim",
    "release_ref",
    "share",
    "share_table",
    "share_tensor",
    "shm_space",
    "synchronize_cuda",
    "table_from_ref",
    "threshold_bytes",
    "trim",
    "zeros",
]
