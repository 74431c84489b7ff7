"""GPU-only messages, rebuilt from the libraries' sources (cited next to each)."""

from __future__ import annotations

from collections.abc import Iterator

from snakepit.errors import (
    DeviceMismatchError,
    OutOfMemoryError,
)

from ._case import (
    GIB,
    MIB,
    PROBE_FREE,
    PROBE_TOTAL,
    Case,
    _cupy_message,
    _denoted,
    _format_size,
    _raised,
)


def gpu_cases() -> Iterator[Case]:
    c = "gpu-source"
    # pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp, DeviceCachingAllocator::malloc
    # (torch >= 2.2): TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory.
    # Tried to allocate ", format_size(alloc_size), ". GPU ", device_id, " has a total
    # capacity of ", format_size(device_total), " of which ", format_size(device_free),
    # " is free. ", proc_info, allowed_info, "Of the allocated memory ", ..., " is
    # allocated by PyTorch, ", private_pool_msg, "and ", ..., " is reserved by PyTorch
    # but unallocated.", " If reserved but unallocated memory is large try setting",
    # " PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See
    # documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
    want, total, free = 2 * GIB, 85_000_000_000, 1_320_000_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)}. GPU 0 has a total "
        f"capacity of {_format_size(total)} of which {_format_size(free)} is free. Including "
        f"non-PyTorch memory, this process has {_format_size(total - free)} memory in use. Of the "
        f"allocated memory {_format_size(70 * GIB)} is allocated by PyTorch, and "
        f"{_format_size(7 * GIB)} is reserved by PyTorch but unallocated. If reserved but "
        "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
        "to avoid fragmentation.  See documentation for Memory Management  "
        "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
    )
    yield Case(
        c,
        "torch-cuda-oom",
        _raised("torch", "OutOfMemoryError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:0",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp",
    )
    # Same function in torch 2.1, raised as torch.cuda.OutOfMemoryError, which spelt
    # " has a total capacty of " and ended "... try setting max_split_size_mb to avoid
    # fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF".
    want, total, free = 20 * MIB, 24 * GIB, 5_960_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)}. GPU 1 has a total "
        f"capacty of {_format_size(total)} of which {_format_size(free)} is free. Process 4242 "
        f"has {_format_size(GIB)} memory in use. Including non-PyTorch memory, this process has "
        f"{_format_size(22 * GIB)} memory in use. Of the allocated memory {_format_size(21 * GIB)} "
        f"is allocated by PyTorch, and {_format_size(300 * MIB)} is reserved by PyTorch but "
        "unallocated. If reserved but unallocated memory is large try setting max_split_size_mb "
        "to avoid fragmentation.  See documentation for Memory Management and "
        "PYTORCH_CUDA_ALLOC_CONF"
    )
    yield Case(
        c,
        "torch-cuda-oom-2.1",
        _raised("torch.cuda", "OutOfMemoryError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:1",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp (v2.1)",
    )
    # torch < 2.1 (same file): "CUDA out of memory. Tried to allocate ", format_size(alloc_size),
    # " (GPU ", device, "; ", format_size(device_total), " total capacity; ",
    # format_size(allocated), " already allocated; ", format_size(device_free), " free; ",
    # allowed_info, format_size(reserved), " reserved in total by PyTorch)", " If reserved
    # memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.
    # See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF"
    want, total, free = 36 * MIB, 8_514_000_000, 49_350_000
    message = (
        f"CUDA out of memory. Tried to allocate {_format_size(want)} (GPU 0; "
        f"{_format_size(total)} total capacity; {_format_size(136_700_000)} already allocated; "
        f"{_format_size(free)} free; {_format_size(4 * GIB)} allowed; {_format_size(188 * MIB)} "
        "reserved in total by PyTorch) If reserved memory is >> allocated memory try setting "
        "max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and "
        "PYTORCH_CUDA_ALLOC_CONF"
    )
    yield Case(
        c,
        "torch-cuda-oom-legacy",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        OutOfMemoryError,
        device="cuda:0",
        requested=_denoted(_format_size(want)),
        available=_denoted(_format_size(free)),
        total=_denoted(_format_size(total)),
        framework="torch",
        source="pytorch/pytorch c10/cuda/CUDACachingAllocator.cpp (< 2.1)",
    )
    # openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc,
    # TfAllocatorAdapter::Allocate: absl::ResourceExhaustedError(absl::StrCat("Out of
    # memory while trying to allocate ", size, " bytes.")); JAX prefixes the status code.
    size = 17_179_869_184
    message = f"RESOURCE_EXHAUSTED: Out of memory while trying to allocate {size} bytes."
    yield Case(
        c,
        "xla-resource-exhausted",
        _raised("jaxlib.xla_extension", "XlaRuntimeError", RuntimeError, message),
        OutOfMemoryError,
        device="gpu",
        requested=size,
        available=PROBE_FREE,
        total=PROBE_TOTAL,
        framework="jax",
        source="openxla/xla xla/stream_executor/integrations/tf_allocator_adapter.cc",
    )
    # cupy/cupy cupy/cuda/memory.pyx, class OutOfMemoryError(MemoryError)
    yield Case(
        c,
        "cupy-oom",
        _raised("cupy.cuda.memory", "OutOfMemoryError", MemoryError, _cupy_message(1024, 0)),
        OutOfMemoryError,
        device="cuda",
        requested=1024,
        available=PROBE_FREE,
        total=PROBE_TOTAL,
        framework="cupy",
        source="cupy/cupy cupy/cuda/memory.pyx",
    )
    message = _cupy_message(3 * GIB, 6 * GIB, limit=8 * GIB)
    yield Case(
        c,
        "cupy-oom-limit",
        _raised("cupy.cuda.memory", "OutOfMemoryError", MemoryError, message),
        OutOfMemoryError,
        device="cuda",
        requested=3 * GIB,
        available=PROBE_FREE,
        total=8 * GIB,
        framework="cupy",
        source="cupy/cupy cupy/cuda/memory.pyx",
    )
    # pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp,
    # c10::impl::common_device_check_failure (torch < 2.6): "Expected all tensors to be
    # on the same device, but found at least two devices, ", common_device, " and ",
    # tensor.device(), "! (when checking argument for argument ", argName, " in method ",
    # methodName, ")"
    message = (
        "Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:0 and cpu! (when checking argument for argument mat2 in method wrapper_CUDA_mm)"
    )
    yield Case(
        c,
        "torch-device-mismatch",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cuda:0", "cpu"),
        device="cuda:0",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp",
    )
    message = (
        "Expected all tensors to be on the same device, but found at least two devices, "
        "cuda:1 and cuda:0! (when checking argument for argument target in method "
        "wrapper_CUDA_nll_loss_forward)"
    )
    yield Case(
        c,
        "torch-device-mismatch-gpus",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cuda:1", "cuda:0"),
        device="cuda:1",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp",
    )
    # Same function, torch >= 2.6: "Expected all tensors to be on the same device, but
    # got ", argName, " is on ", tensor.device(), ", different from other tensors on ",
    # common_device, " (when checking argument in method ", methodName, ")"
    message = (
        "Expected all tensors to be on the same device, but got mat2 is on cpu, different "
        "from other tensors on cuda:0 (when checking argument in method wrapper_CUDA_mm)"
    )
    yield Case(
        c,
        "torch-device-mismatch-2.6",
        _raised("builtins", "RuntimeError", RuntimeError, message),
        DeviceMismatchError,
        devices=("cpu", "cuda:0"),
        device="cuda:0",
        source="pytorch/pytorch aten/src/ATen/core/op_registration/adaption.cpp (>= 2.6)",
    )
