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
