"""The suggestions snakepit errors carry: every advice text and the logic that picks it.

Data and pure functions only, so each piece of advice can be tested on its
own and new library messages (see :mod:`snakepit.errors._parse`) can gain
advice without touching the classes. The error classes
(:mod:`snakepit.errors._hierarchy`) call these from their
``_default_suggestion``; the C-status translator of the zero-copy layer calls
:func:`shared_memory_advice`. What users see is described in
``docs/errors.md`` (section "Suggestions").
"""

from __future__ import annotations

from collections.abc import Sequence

from snakepit._util import DTYPE_NAMES, format_bytes
from snakepit.errors._kinds import ExitKind

__all__ = [
    "CIRCUIT_OPEN",
    "CRASH_SUGGESTIONS",
    "DEVICE_NOT_AVAILABLE",
    "INVALID_DESCRIPTOR",
    "POOL_CLOSED",
    "SESSION_LOST",
    "SHM_DIR",
    "UNSENDABLE_RESULT",
    "WORKER_START",
    "Shape",
    "crash_suggestion",
    "device_mismatch_suggestion",
    "dtype_suggestion",
    "oom_suggestion",
    "pick_target_device",
    "serialization_suggestion",
    "shape_suggestion",
    "shape_text",
    "shared_memory_advice",
    "shared_memory_cap_advice",
]

Shape = tuple[int, ...]
"""A tensor shape as a tuple of non-negative ints."""

SHM_DIR = "/dev/shm"
"""The shared-memory filesystem the zero-copy layer allocates in."""


def shape_text(shape: Shape | None) -> str:
    """A shape as Python prints a tuple (``(3,)``, ``(3, 4)``); ``None`` gives ``?``."""
    if shape is None:
        return "?"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------- shapes


def _product(shape: Shape) -> int:
    result = 1
    for d in shape:
        result *= d
    return result


def _matmul_suggestion(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
        head = (
            f"matmul needs a.shape[-1] == b.shape[-2], but {shape_text(a)} @ {shape_text(b)} "
            f"has a.shape[-1] = {a[-1]} != b.shape[-2] = {b[-2]}"
        )
        if a[-1] == b[-1]:
            fix = (
                "transposing the second operand fits: a @ b.T (or b.transpose(-2, -1)) has "
                f"shape {shape_text((*a[:-1], b[-2]))}"
            )
        elif a[-2] == b[-2]:
            fix = (
                "transposing the first operand fits: a.T @ b (or a.transpose(-2, -1) @ b) has "
                f"shape {shape_text((a[-1], b[-1]))}"
            )
        elif a[-2] == b[-1]:
            fix = f"the operands look swapped: b @ a has shape {shape_text((*b[:-1], a[-1]))}"
        else:
            fix = (
                f"no transpose fits (a.T @ b needs {a[-2]} == {b[-2]}, a @ b.T needs "
                f"{a[-1]} == {b[-1]}): check which tensors are multiplied; if b is a layer's "
                f"weight, the layer expects inputs whose last dimension is {b[-2]}"
            )
        return f"{head}; {fix}"
    if a is not None and b is not None and len(a) >= 2 and len(b) == 1:
        return (
            f"matrix @ vector needs a.shape[-1] == len(v), but {a[-1]} != {b[0]}; if the vector "
            f"belongs on the left use v @ a (needs a.shape[-2] == {b[0]}), otherwise transpose "
            "the matrix (a.T) or reshape the vector"
        )
    if a is not None and b is not None and len(a) == 1 and len(b) == 1:
        return (
            f"the inner dimensions differ: the first operand's last dimension is {a[0]} but the "
            f"second's second-to-last is {b[0]}; transpose the operand whose inner dimension is "
            "wrong (x.T / x.transpose(-2, -1)) or reshape it"
        )
    return (
        "matmul needs the last dimension of the first operand to equal the second-to-last "
        "of the second; transpose one operand (x.T / x.transpose(-2, -1)) or reshape it"
    )


def _reshape_suggestion(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) == 1:
        known = _product(tuple(d for d in b if d >= 0))
        target = shape_text(b)
        if any(d < 0 for d in b):
            return (
                f"{a[0]} elements cannot be reshaped to {target}: the known dimensions multiply "
                f"to {known}, which does not divide {a[0]}; change them so their product divides "
                f"{a[0]}"
            )
        return (
            f"{a[0]} elements cannot be reshaped to {target} ({known} elements); pick a shape "
            f"whose product is {a[0]}, or put -1 in one dimension to have it inferred"
        )
    return (
        "a reshape/view must keep the number of elements; pick a target shape whose "
        "product matches the input size, or use -1 for one dimension to let it be inferred"
    )


def _pair_text(a: Shape | None, b: Shape | None) -> str:
    if a is not None and b is not None and len(a) == len(b) == 1:
        return f"{a[0]} vs {b[0]}"
    return f"{shape_text(a)} vs {shape_text(b)}"


def shape_suggestion(
    a: Shape | None, b: Shape | None, operation: str | None, dimension: int | None
) -> str:
    """Advice for a :class:`~snakepit.errors.ShapeError`, naming the sizes that clash."""
    op = (operation or "").lower()
    both = a is not None and b is not None
    at = f" at dimension {dimension}" if dimension is not None else ""
    if op in {"matmul", "mm", "dot", "linear", "mv"}:
        return _matmul_suggestion(a, b)
    if op == "bmm":
        got = f" should be {list(a or ())} but are {list(b or ())}" if both else " do not fit"
        return (
            "batched matmul needs batch1 of shape (batch, n, k) and batch2 of shape "
            f"(batch, k, m): batch2's first two dimensions{got}; transpose batch2's last two "
            "dimensions (x.transpose(-2, -1)) if they are swapped, or fix the batch size"
        )
    if op == "reshape":
        return _reshape_suggestion(a, b)
    if op == "view":
        return (
            "the tensor is not contiguous in memory, so .view() cannot reinterpret it: use "
            ".reshape(...) (copies only when needed) or call .contiguous() before .view(...)"
        )
    if op in {"concatenate", "stack"}:
        if op == "stack":
            detail = f" ({_pair_text(a, b)})" if both else ""
            return (
                f"stack needs inputs of exactly the same shape{detail}; slice or pad them to "
                "one shape, or use concatenate/cat if they should be joined along an existing "
                "dimension"
            )
        detail = f" ({_pair_text(a, b)}{at})" if both else ""
        return (
            "concatenation needs the same size in every dimension except the one joined"
            f"{detail}; slice or pad the inputs to match, or join along the dimension where "
            "they differ"
        )
    if op == "conv" and a is not None and b is not None and len(a) >= 2 and len(b) >= 2:
        return (
            f"the layer expects {a[1]} input channels but the input has {b[1]} (dimension 1 "
            f"of {shape_text(b)}, laid out as (N, C, ...)); if the channels are last, permute "
            "them first (x.permute(0, 3, 1, 2) for NHWC images), otherwise set the layer's "
            f"in_channels to {b[1]}"
        )
    if op == "normalize":
        detail = f" ({_pair_text(a, b)})" if both else ""
        return (
            f"the normalisation layer was built for another feature size{detail}; build it "
            "with the input's feature size (BatchNorm1d(C) for (N, C), LayerNorm(shape of the "
            "trailing dimensions))"
        )
    if op == "length":
        detail = f" ({_pair_text(a, b)})" if both else ""
        return (
            f"the inputs have different lengths{detail}; every column/array must have the "
            "same number of rows: look for a dropped or duplicated row, or align them first "
            "(e.g. reindex or merge on a key)"
        )
    if op == "features" and a is not None and b is not None:
        return (
            f"the model expects {b[0]} features but the input has {a[0]}; pass the same "
            "columns, in the same order, as during fit/training (or rebuild the model for "
            f"{a[0]} input features)"
        )
    if op == "ndim":
        shape = f" (got shape {shape_text(a)})" if a is not None else ""
        return (
            f"the input has the wrong number of dimensions{shape}; use x.reshape(-1, 1) for a "
            "single feature, x.reshape(1, -1) for a single sample, or x.ravel() for a 1-d target"
        )
    if op == "samples":
        shape = f" (shape {shape_text(a)})" if a is not None else ""
        return f"the input has no samples{shape}; check the filtering or split that produced it"
    if op == "linalg":
        return (
            "this linear-algebra routine needs square matrices in the last two dimensions "
            "(or operands whose sizes agree); check x.shape[-2:] and transpose or slice it"
        )
    if a is not None and b is not None and dimension is not None and len(a) == len(b) == 1:
        return (
            f"sizes {a[0]} and {b[0]} differ at dimension {dimension}; reshape or slice one "
            "tensor so they match there, or make one of them 1 there so it broadcasts"
        )
    if both:
        return (
            f"shapes {shape_text(a)} and {shape_text(b)} cannot be broadcast: aligned from the "
            "right, each pair of dimensions must be equal or 1; reshape one operand "
            "(x.reshape(...)) or add a size-1 axis (x[:, None] / x.unsqueeze(dim)) to line them up"
        )
    return "check the operand shapes; reshape or broadcast them so the dimensions line up"


# ---------------------------------------------------------------------- dtypes

# Names a suggestion can put after numpy./torch. as they are.
_CONCRETE_DTYPES = frozenset(DTYPE_NAMES)


def dtype_suggestion(expected: str | None, got: str | None) -> str:
    """Advice for a :class:`~snakepit.errors.DtypeError`: the cast to write, per library."""
    operand = f"the {got} operand" if got else "the mismatched operand"
    if expected == "bfloat16":  # a PyTorch/JAX dtype NumPy does not have
        return f"cast {operand} to bfloat16: x.to(torch.bfloat16) for PyTorch"
    if expected in _CONCRETE_DTYPES:
        return (
            f"cast {operand} to {expected}: x.astype(numpy.{expected}) for NumPy, "
            f"x.to(torch.{expected}) for PyTorch, or col.astype('{expected}') for pandas"
        )
    if expected:
        return (
            f"convert {operand} to {expected} before the operation (e.g. "
            "pandas.to_numeric(...), x.astype(...), x.to(dtype)); inputs of mixed types "
            "need an explicit conversion"
        )
    if got:
        return (
            f"{got} is not supported here; cast to a supported dtype first "
            "(x.astype(...) / x.to(dtype)), e.g. a floating-point type for arithmetic"
        )
    return "cast the operands to one common dtype (x.astype(...) / x.to(dtype))"


# --------------------------------------------------------------------- devices

_GPU_PREFIXES = ("cuda", "gpu", "mps", "xpu", "rocm", "hip", "tpu")


def _oom_figures(requested: int | None, available: int | None, total: int | None) -> str:
    if requested is None:
        return ""
    parts = [f"the allocation asked for {format_bytes(requested)}"]
    if available is not None:
        of_total = f" of {format_bytes(total)}" if total is not None else ""
        parts.append(f"with {format_bytes(available)} free{of_total}")
    elif total is not None:
        parts.append(f"on a device of {format_bytes(total)}")
    text = " ".join(parts)
    if available is not None and requested > available:
        text += (
            f": the allocation is {format_bytes(requested - available)} larger than the free memory"
        )
    return text + "; "


def oom_suggestion(
    device: str | None,
    framework: str | None,
    requested: int | None,
    available: int | None,
    total: int | None,
) -> str:
    """Advice for an :class:`~snakepit.errors.OutOfMemoryError`: the figures, then the
    levers of the library that ran out (host memory, PyTorch, JAX, TensorFlow or CuPy)."""
    figures = _oom_figures(requested, available, total)
    name = (device or "").lower()
    gpu = name.startswith(_GPU_PREFIXES) or (not name and framework in {"jax", "cupy"})
    if not gpu:
        return (
            f"{figures}reduce the batch size or process the data in chunks, use a smaller "
            "dtype (float32/float16 instead of float64), and drop references to large "
            "arrays you no longer need"
        )
    if framework == "jax":
        return (
            f"{figures}reduce the batch size, use lower precision (bfloat16), donate input "
            "buffers (jax.jit(..., donate_argnums=...)), and if other processes share the "
            "GPU stop JAX from preallocating it (XLA_PYTHON_CLIENT_PREALLOCATE=false or a "
            "smaller XLA_PYTHON_CLIENT_MEM_FRACTION)"
        )
    if framework == "tensorflow":
        return (
            f"{figures}reduce the batch size, use mixed precision "
            "(keras.mixed_precision.set_global_policy('mixed_float16')), and if other "
            "processes share the GPU let TensorFlow grow its memory instead of reserving it "
            "all (tf.config.experimental.set_memory_growth(gpu, True))"
        )
    if framework == "cupy":
        return (
            f"{figures}reduce the batch size or process the data in chunks, use float32 "
            "or float16, and return cached blocks to the driver "
            "(cupy.get_default_memory_pool().free_all_blocks())"
        )
    return (
        f"{figures}reduce the batch size, use lower precision (float16/bfloat16 or "
        "torch.autocast), and release cached memory (del unused tensors, then "
        "torch.cuda.empty_cache()); if much memory is reserved but unallocated, set "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
    )


def pick_target_device(devices: Sequence[str]) -> str | None:
    """The device to move stray tensors to: the first accelerator named, else the first."""
    # Models usually live on the accelerator, so suggest moving the stray CPU
    # tensor there rather than dragging everything back to the CPU.
    for dev in devices:
        if dev != "cpu":
            return dev
    return devices[0] if devices else None


def device_mismatch_suggestion(devices: Sequence[str]) -> str:
    """Advice for a :class:`~snakepit.errors.DeviceMismatchError`."""
    target = pick_target_device(devices) or "cuda"
    return (
        f"move every tensor (and the model) to one device before the operation, "
        f"e.g. tensor.to('{target}') / model.to('{target}')"
    )


DEVICE_NOT_AVAILABLE = (
    "run `snakepit hardware` to see the devices present, or choose another device "
    "(device='cpu', or select_with_fallback([...]))"
)

# ---------------------------------------------------------------- serialisation


#: Advice for a result a worker could not send back.
UNSENDABLE_RESULT = (
    "return picklable values (plain data, arrays, tensors, instances of module-level "
    "classes); open files, locks, sockets and live connections cannot cross processes, so "
    "return what they hold instead"
)


def serialization_suggestion(direction: str) -> str:
    """Advice for a :class:`~snakepit.errors.SerializationError` (``encode``/``decode``)."""
    if direction == "encode":
        return (
            "pass picklable arguments (module-level functions, plain data, arrays); "
            "open files, locks, sockets and live connections cannot cross processes"
        )
    return (
        "make sure the module defining the value is importable in both the worker and the "
        "supervisor (same code, same sys.path)"
    )


# --------------------------------------------------------------------- workers

CRASH_SUGGESTIONS: dict[ExitKind, str] = {
    ExitKind.segfault: (
        "native code in the worker read or wrote invalid memory (SIGSEGV); check array "
        "shapes/dtypes/contiguity passed to C extensions"
    ),
    ExitKind.abort: (
        "a native library called abort() (failed assertion or uncaught C++ exception); "
        "the worker's stderr usually names the assertion"
    ),
    ExitKind.bus_error: (
        "the worker touched unmapped or misaligned memory (SIGBUS); a full /dev/shm or a "
        "truncated memory-mapped file are common causes"
    ),
    ExitKind.floating_point_error: (
        "an integer division by zero or trapped floating-point error in native code (SIGFPE)"
    ),
    ExitKind.killed: (
        "the worker was killed from outside; SIGKILL often means the kernel OOM killer: "
        "reduce memory use per call or raise the memory limit"
    ),
    ExitKind.timeout: "the call exceeded its timeout; raise timeout= or make the call faster",
    ExitKind.exit: (
        "the function (or a library it called) ended the worker process with sys.exit(), "
        "exit() or os._exit(); raise an exception instead to fail the call without losing "
        "the worker"
    ),
    ExitKind.lost: (
        "the worker's host or node was lost (the Ray actor hosting it died or its node left "
        "the cluster), so no exit status exists; mark calls idempotent=True to retry them "
        "on another host, and check the node's health and Ray's logs"
    ),
}
"""Advice per exit kind; kinds without advice (``normal``, ``unknown``...) are absent.
See :func:`crash_suggestion` to look one up by its plain string."""


#: Kinds where the worker's Python stack at the moment of the crash helps.
_STACK_KINDS = frozenset(
    {ExitKind.segfault, ExitKind.abort, ExitKind.bus_error, ExitKind.floating_point_error}
)


def crash_suggestion(kind: str, *, has_stack: bool = False) -> str | None:
    """The advice for a crash of exit kind ``kind`` (an ``ExitKind`` value), if any.

    ``has_stack``: the worker's stack at the crash is attached to the error
    (``remote_traceback``), so the advice points there; otherwise, for native
    crashes, it says how to get one.
    """
    try:
        exit_kind = ExitKind(kind)
    except ValueError:  # a kind from a newer or foreign peer
        return None
    advice = CRASH_SUGGESTIONS.get(exit_kind)
    if advice is None or exit_kind not in _STACK_KINDS:
        return advice
    if has_stack:
        return advice + "; the worker's Python stack at the crash is in remote_traceback"
    return advice + "; run the call with PYTHONFAULTHANDLER=1 to see where it crashed"


SESSION_LOST = (
    "the session's state (what its calls kept in the worker) must be built again: call "
    "again to start a fresh session, or give the pool a session_initializer= that "
    "rebuilds it on the new worker"
)

WORKER_START = (
    "the error chained above is what the worker raised while starting; fix the "
    "initializer (it runs in every worker before any call) and create the pool again"
)

POOL_CLOSED = (
    "submit calls before shutdown() (or inside the `with Pool(...)` block), or create a new Pool"
)

CIRCUIT_OPEN = (
    "workers have been failing repeatedly; check pool.health() for the crash "
    "history before retrying. To run every call regardless (batch work), create "
    "the pool with circuit_breaker=False; to tolerate more failures, pass "
    "circuit_breaker=CircuitBreakerRegistry(failure_threshold=..., open_duration=...)"
)

# --------------------------------------------------------------- shared memory

INVALID_DESCRIPTOR = (
    "only pass TensorRefs obtained from snakepit (share/ref_of/empty) and keep the "
    "array alive until the receiver has opened it"
)


def shared_memory_advice(requested: int | None, available: int | None) -> str:
    """How to make room when ``/dev/shm`` is full, with the shortfall when both are known.

    Args:
        requested: Bytes the failed allocation asked for, if known.
        available: Bytes left in ``/dev/shm``, if known.
    """
    more = ""
    if requested is not None and available is not None and requested > available:
        more = f" by at least {format_bytes(requested - available)}"
    return (
        f"release shared arrays you no longer need, or enlarge {SHM_DIR}{more}: "
        "`docker run --shm-size=<size> ...` for containers (Kubernetes: an emptyDir with "
        "medium: Memory), or `sudo mount -o remount,size=<size> /dev/shm` on a host; "
        "if snakepit's own shared-memory cap is the limit, raise that instead"
    )


def shared_memory_cap_advice(cap: int | None) -> str:
    """How to get past snakepit's own shared-memory cap (``cap`` bytes, if known)."""
    current = f" (currently {format_bytes(cap)})" if cap is not None else ""
    return (
        "release shared arrays you no longer need (ref.release() or drop the arrays), "
        f"or raise snakepit's shared-memory cap{current}"
    )
