"""Out-of-memory messages: whether a message is one, and the figures it names.

Part of :func:`snakepit.errors._parse.parse_context`. Recognises the
out-of-memory errors of PyTorch (CUDA, MPS, XPU and CPU allocators), NumPy,
JAX/XLA, CuPy and PyArrow (the corpus in ``tests/errors/corpus/`` raises
them) and reads the requested, free, total and allocated bytes in any of the
units they print.
"""

from __future__ import annotations

import re

__all__ = ["is_oom", "parse_oom"]

Context = dict[str, object]

_UNITS: dict[str, int] = {
    "b": 1,
    "byte": 1,
    "bytes": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "pib": 1 << 50,
    "eib": 1 << 60,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "eb": 10**18,
}

# "2.00 GiB", "16.00GiB", "1,024 bytes", "35184372088832 bytes"
_SIZE = r"(\d[\d,]*(?:\.\d+)?)\s*([KMGTPE]i?B|bytes?|B)\b"


def _to_bytes(number: str, unit: str) -> int | None:
    factor = _UNITS.get(unit.lower())
    if factor is None:
        return None
    try:
        return round(float(number.replace(",", "")) * factor)
    except ValueError:
        return None


_OOM_TYPES = frozenset({"MemoryError", "OutOfMemoryError", "_ArrayMemoryError", "ArrowMemoryError"})
_OOM_WORDS = re.compile(
    r"out of memory|unable to allocate|not enough memory|failed to allocate|"
    r"cannot allocate memory|can't allocate memory|std::bad_alloc|malloc of size \d+ failed|"
    r"RESOURCE_EXHAUSTED:.{0,80}(?:memory|allocat)|OOM when allocating tensor",
    re.IGNORECASE,
)
_OOM_REQUESTED = [
    # torch: "Tried to allocate 2.00 GiB"; numpy: "Unable to allocate 8.00 PiB";
    # torch CPU: "you tried to allocate 1152921504606846976 bytes";
    # XLA: "Out of memory while trying to allocate 17179869184 bytes."
    re.compile(r"(?:tried|trying|unable|failed) to allocate " + _SIZE, re.IGNORECASE),
    # CuPy: "Out of memory allocating 1,024 bytes"
    re.compile(r"out of memory allocating " + _SIZE, re.IGNORECASE),
    # pyarrow: "malloc of size 4611686018427387904 failed"
    re.compile(r"malloc of size (\d+)() failed"),
]
_OOM_TOTAL = [
    # torch >= 2.1: "GPU 0 has a total capacity of 79.15 GiB" (2.1 spelt "capacty")
    re.compile(r"total capac(?:i)?ty of " + _SIZE),
    # torch < 2.1: "(GPU 0; 15.78 GiB total capacity; ..."
    re.compile(_SIZE + r" total capacity"),
    # torch MPS: "max allowed: 18.13 GB"
    re.compile(r"max allowed: " + _SIZE),
    # CuPy: "limit set to: 1,073,741,824 bytes"
    re.compile(r"limit set to: " + _SIZE),
]
_OOM_FREE = [
    re.compile(r"of which " + _SIZE + r" is free"),
    re.compile(_SIZE + r" free\b"),
    # XLA TPU: "There are 6.43M free."
    re.compile(r"There are " + _SIZE + r" free"),
]
_OOM_ALLOCATED = [
    re.compile(_SIZE + r" already allocated"),
    re.compile(r"Of the allocated memory " + _SIZE + r" is allocated by PyTorch"),
    re.compile(r"allocated so far: " + _SIZE),
]
# TensorFlow (framework/op_kernel.cc): "OOM when allocating tensor with shape[1024,1024,256]
# and type float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc"
_TF_OOM_TENSOR = re.compile(
    r"OOM when allocating tensor with shape\s*\[([\d,\s]*)\] and type (\w+)"
)
_TF_ITEMSIZE: dict[str, int] = {
    "float": 4, "double": 8, "half": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
    "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1,
    "complex64": 8, "complex128": 16,
}  # fmt: skip
_TF_DEVICE = re.compile(r"/device:(GPU|CPU|TPU):(\d+)")
_GPU_INDEX = re.compile(r"\(GPU (\d+);|\bGPU (\d+) has\b")
_MPS = re.compile(r"\bmps\b")
_FRAMEWORK_ROOTS: dict[str, str] = {
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "cupy": "cupy",
    "cupy_backends": "cupy",
    "numpy": "numpy",
    "pyarrow": "pyarrow",
    "tensorflow": "tensorflow",
}


def _first_size(patterns: list[re.Pattern[str]], message: str) -> int | None:
    for pattern in patterns:
        m = pattern.search(message)
        if m:
            return _to_bytes(m.group(1), m.group(2) or "bytes")
    return None


def _framework(message: str, qualified_type: str | None) -> str | None:
    root = (qualified_type or "").split(".", 1)[0]
    if root in _FRAMEWORK_ROOTS:
        return _FRAMEWORK_ROOTS[root]
    if "PyTorch" in message or "PYTORCH" in message or "DefaultCPUAllocator" in message:
        return "torch"
    if "out of memory. Tried to allocate" in message:  # torch caching allocators
        return "torch"
    if "OOM when allocating tensor" in message:
        return "tensorflow"
    if "RESOURCE_EXHAUSTED" in message or "XLA" in message:
        return "jax"
    if "for an array with shape" in message:
        return "numpy"
    if "malloc of size" in message:
        return "pyarrow"
    return None


def is_oom(
    message: str, python_type: str | None, qualified_type: str | None, builtin_type: str | None
) -> bool:
    return (
        python_type in _OOM_TYPES
        or builtin_type == "MemoryError"
        or "OutOfMemory" in (qualified_type or "")
        or bool(_OOM_WORDS.search(message))
    )


def _oom_device(message: str, framework: str | None, cpu_type: bool) -> str | None:
    lowered = message.lower()
    tf_device = _TF_DEVICE.search(message) if framework == "tensorflow" else None
    if tf_device:
        return f"{tf_device.group(1).lower()}:{tf_device.group(2)}"
    m = _GPU_INDEX.search(message)
    kind = "xpu" if lowered.startswith("xpu") else "cuda"
    if m:
        return f"{kind}:{m.group(1) or m.group(2)}"
    if lowered.startswith("xpu"):
        return "xpu"
    if _MPS.search(lowered):
        return "mps"
    if "cuda" in lowered or "hip " in lowered or framework == "cupy":
        return "cuda"
    if "gpu" in lowered or framework == "jax":
        return "gpu"
    if cpu_type or "cpu" in lowered or framework in {"numpy", "pyarrow"}:
        return "cpu"
    return None


def parse_oom(
    message: str, python_type: str | None, qualified_type: str | None, builtin_type: str | None
) -> Context:
    framework = _framework(message, qualified_type)
    cpu_type = python_type in {"MemoryError", "_ArrayMemoryError", "ArrowMemoryError"} or (
        builtin_type == "MemoryError" and framework not in {"cupy", "jax", "torch"}
    )
    memory: Context = {}
    device = _oom_device(message, framework, cpu_type)
    if device is not None:
        memory["device"] = device
    if framework is not None:
        memory["framework"] = framework
    for key, patterns in (
        ("requested", _OOM_REQUESTED),
        ("total", _OOM_TOTAL),
        ("free", _OOM_FREE),
        ("allocated", _OOM_ALLOCATED),
    ):
        value = _first_size(patterns, message)
        if value is not None:
            memory[key] = value
    tensor = _TF_OOM_TENSOR.search(message)
    if "requested" not in memory and tensor and tensor.group(2) in _TF_ITEMSIZE:
        count = 1
        for dim in re.findall(r"\d+", tensor.group(1)):
            count *= int(dim)
        memory["requested"] = count * _TF_ITEMSIZE[tensor.group(2)]
    return memory
