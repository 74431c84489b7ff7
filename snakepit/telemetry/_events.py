"""Every event snakepit emits: name, measurements, metadata and when.

This catalogue is the single source of the event reference table in the docs
(generated at docs build time) and of the events the built-in handlers attach
to, so code, handlers and documentation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from snakepit.telemetry._bus import Event


@dataclass(frozen=True, slots=True)
class EventSpec:
    """Documentation of one event."""

    name: Event
    measurements: dict[str, str]
    metadata: dict[str, str]
    when: str

    @property
    def dotted(self) -> str:
        """``snakepit.call.stop`` form of the name (metric and log names)."""
        return ".".join(self.name)


_CALL_META = {
    "call_id": "pool-unique id of the call",
    "function": "qualified name of the function called",
    "pool": "name of the pool (``pool.name``, e.g. ``pool-1``)",
}
_WORKER_META = {
    "worker_id": "slot index of the worker (stable across restarts)",
    "pid": "process id of the worker",
    "device": "device the worker is pinned to, or None",
}
_SPAN_START = {"monotonic_time": "time.perf_counter() at the start, seconds"}

CALL_START: Event = ("snakepit", "call", "start")
CALL_STOP: Event = ("snakepit", "call", "stop")
CALL_EXCEPTION: Event = ("snakepit", "call", "exception")
POOL_CHECKOUT: Event = ("snakepit", "pool", "checkout")
POOL_CHECKIN: Event = ("snakepit", "pool", "checkin")
POOL_SIZE: Event = ("snakepit", "pool", "size")
WORKER_START: Event = ("snakepit", "worker", "start")
WORKER_CRASH: Event = ("snakepit", "worker", "crash")
WORKER_RESTART: Event = ("snakepit", "worker", "restart")
WORKER_RECYCLE: Event = ("snakepit", "worker", "recycle")
SESSION_LOST: Event = ("snakepit", "session", "lost")
CIRCUIT_OPEN: Event = ("snakepit", "circuit", "open")
CIRCUIT_HALF_OPEN: Event = ("snakepit", "circuit", "half_open")
CIRCUIT_CLOSE: Event = ("snakepit", "circuit", "close")
RETRY_ATTEMPT: Event = ("snakepit", "retry", "attempt")
HEALTH_ALERT: Event = ("snakepit", "health", "alert")
MEMORY_ALLOCATE: Event = ("snakepit", "memory", "allocate")
MEMORY_RELEASE: Event = ("snakepit", "memory", "release")
MEMORY_GPU: Event = ("snakepit", "memory", "gpu")
MEMORY_TORCH: Event = ("snakepit", "memory", "torch")
SERIALIZE_STOP: Event = ("snakepit", "serialize", "stop")
HARDWARE_DETECTED: Event = ("snakepit", "hardware", "detected")
DEVICE_SELECTED: Event = ("snakepit", "device", "selected")
DEVICE_UNAVAILABLE: Event = ("snakepit", "device", "unavailable")
ERROR: Event = ("snakepit", "error")
ML_TENSOR_OP: Event = ("snakepit", "ml", "tensor_op")
ML_INFERENCE: Event = ("snakepit", "ml", "inference")
ML_TRAIN_STEP: Event = ("snakepit", "ml", "train_step")
CUDA_COPY: Event = ("snakepit", "cuda", "copy")
CALL_FALLBACK: Event = ("snakepit", "call", "fallback")

_ML_WORKER = {
    "worker_id": "set when the event was raised in a worker and forwarded",
    "worker_pid": "process id of that worker (forwarded events only)",
}

CATALOGUE: tuple[EventSpec, ...] = (
    EventSpec(
        CALL_START,
        {**_SPAN_START, "system_time": "time.time() at submission"},
        {**_CALL_META, "device": "device requested for the call, or None"},
        "A call was submitted to a pool (once per call, not per retry).",
    ),
    EventSpec(
        CALL_STOP,
        {
            "duration": "submission to result, seconds",
            "queue_time": "submission to hand-off to a worker (last attempt), seconds",
            "serialize_time": "encoding the arguments, seconds",
            "python_time": "running the function in the worker, seconds",
            "deserialize_time": "decoding the result in the caller, seconds",
            "attempts": "attempts made (1 unless retried)",
        },
        {**_CALL_META, **_WORKER_META},
        "A call returned a result.",
    ),
    EventSpec(
        CALL_EXCEPTION,
        {
            "duration": "submission to failure, seconds",
            "queue_time": "submission to hand-off (0 if never handed off), seconds",
            "serialize_time": "encoding the arguments, seconds",
            "python_time": "time in the worker's function if it raised there, else 0",
            "attempts": "attempts made",
        },
        {
            **_CALL_META,
            "worker_id": "worker of the last attempt, or None",
            "kind": "public snakepit error class (``ShapeError``, ``PythonError``, "
            "``WorkerCrashedError`` ...); other exceptions by their type name",
            "python_type": "the remote exception's type for a ``PythonError``, else None",
            "reason": "the exception's message",
            "exception": "the exception object",
        },
        "A call failed: the function raised, the worker died or timed out, or the "
        "call never reached a worker (circuit open, shut down, bad arguments).",
    ),
    EventSpec(
        POOL_CHECKOUT,
        {"queue_time": "time the call waited for a worker, seconds"},
        {"call_id": "the call", "worker_id": "the worker it was given to", "pool": "pool name"},
        "A call was handed to a worker.",
    ),
    EventSpec(
        POOL_CHECKIN,
        {"busy_time": "time the worker spent on the call, seconds"},
        {"call_id": "the call", "worker_id": "the worker, free again", "pool": "pool name"},
        "A worker answered a call and is free again.",
    ),
    EventSpec(
        POOL_SIZE,
        {
            "size": "worker slots",
            "idle": "idle workers",
            "busy": "busy workers",
            "queue_depth": "calls waiting for a worker",
        },
        {"pool": "pool name"},
        "The number of live workers changed (start, crash); size 0 once the pool has shut down.",
    ),
    EventSpec(
        WORKER_START,
        {"startup_time": "spawn to ready (interpreter, imports, initializer), seconds"},
        {
            **_WORKER_META,
            "restart": "True when this start replaced a dead worker",
            "pool": "pool name",
        },
        "A worker process finished starting and is ready for calls.",
    ),
    EventSpec(
        WORKER_CRASH,
        {"uptime": "how long the process lived, seconds"},
        {
            **_WORKER_META,
            "exit_kind": "classification: segfault, abort, killed, oom, timeout, exit ...",
            "signal": "signal number or None",
            "exit_code": "exit status or None",
            "call_id": "call that was running, or None",
            "function": "qualified name of the function that was running, or None",
            "pool": "pool name",
        },
        "A worker died unexpectedly (or was terminated for a timeout).",
    ),
    EventSpec(
        WORKER_RESTART,
        {"delay": "back-off before the new process starts, seconds"},
        {
            "worker_id": "slot being restarted",
            "crashes": "crashes of this slot within the crash window",
            "pool": "pool name",
        },
        "A replacement for a dead worker was scheduled.",
    ),
    EventSpec(
        WORKER_RECYCLE,
        {
            "uptime": "how long the process lived, seconds",
            "calls": "calls the process answered",
            "resident_bytes": "its private resident memory when it asked to go "
            "(memory reasons), else absent",
        },
        {
            **_WORKER_META,
            "reason": "max_tasks_per_child, max_memory_per_worker, "
            "memory_limit_per_worker or idle_timeout",
            "replaced": "True when a new process starts at once; False for an idle "
            "timeout (started again when a call needs it)",
            "pool": "pool name",
        },
        "A healthy worker was retired on purpose after its reply and exited "
        "(not a crash: no crash count, circuit or health verdict).",
    ),
    EventSpec(
        SESSION_LOST,
        {"failed_calls": "calls of the session that were waiting and failed with it"},
        {
            "session": "the session's name",
            "worker_id": "slot whose worker held the session",
            "pid": "process id of that worker",
            "exit_kind": "how the worker ended (segfault, killed, timeout ...)",
            "reinitialized": "True when the pool's session_initializer rebuilds it "
            "on the next worker (no SessionLostError is raised)",
            "pool": "pool name",
        },
        "The worker holding a session's state ended (crash, timeout, kill): the "
        "session's state is gone.",
    ),
    EventSpec(
        CIRCUIT_OPEN,
        {},
        {
            "circuit": "breaker name (``global`` or ``device:cuda:0``)",
            "previous": "old state",
            "pool": "the pool whose breaker it is",
        },
        "A circuit breaker opened: calls fail fast with CircuitOpenError.",
    ),
    EventSpec(
        CIRCUIT_HALF_OPEN,
        {},
        {"circuit": "breaker name", "previous": "old state", "pool": "pool name"},
        "A circuit breaker lets trial calls through after its reset timeout.",
    ),
    EventSpec(
        CIRCUIT_CLOSE,
        {},
        {"circuit": "breaker name", "previous": "old state", "pool": "pool name"},
        "A circuit breaker closed again after successful trial calls.",
    ),
    EventSpec(
        RETRY_ATTEMPT,
        {"attempt": "number of the attempt about to run (2 = first retry)", "delay": "seconds"},
        {"call_id": "the call", "kind": "error class that caused the retry", "pool": "pool name"},
        "An idempotent call failed and will be tried again.",
    ),
    EventSpec(
        HEALTH_ALERT,
        {"value": "the observed value", "threshold": "the limit it crossed"},
        {
            "alert": "alert kind (crash_rate, error_rate, slow_calls ...)",
            "severity": "warning or critical",
            "subject": "worker or device concerned",
            "message": "human-readable description",
            "device": "device of the crash that raised it",
            "worker_id": "worker of the crash that raised it",
            "pool": "the pool whose monitor it is",
            "health_alert": "the HealthAlert itself (counts, window, time)",
        },
        "The health monitor saw a worker or device cross a threshold.",
    ),
    EventSpec(
        MEMORY_ALLOCATE,
        {"bytes": "size of the array's data"},
        {"dtype": "numpy dtype name", "shape": "array shape"},
        "snakepit.empty/zeros/share allocated shared memory (this process only; "
        "only when a handler is attached).",
    ),
    EventSpec(
        MEMORY_RELEASE,
        {"bytes": "size of the array's data"},
        {},
        "The last view of an array allocated while a release handler was attached died "
        "and its block went back to the arena (this process only).",
    ),
    EventSpec(
        MEMORY_GPU,
        {"used": "bytes in use", "free": "bytes free", "total": "bytes in all"},
        {"device": "GPU index", "name": "GPU name"},
        "The GPU memory profiler took a sample.",
    ),
    EventSpec(
        MEMORY_TORCH,
        {
            "allocated": "bytes torch's caching allocator gave to tensors (memory_allocated)",
            "reserved": "bytes it holds from the driver (memory_reserved)",
        },
        {
            "device": "cuda:N, the process's own ordinal",
            "worker_id": "set when a worker sampled it after a call (at most once a second)",
            "worker_pid": "process id of that worker (forwarded events only)",
        },
        "torch's CUDA allocator was sampled (only where torch is imported and has used CUDA).",
    ),
    EventSpec(
        CUDA_COPY,
        {"bytes": "bytes copied"},
        {
            "memory_kind": "pool, vmm, managed or host: what CUDA IPC cannot share",
            "device": "the tensor's device (cuda:N)",
            "reason": "why it could not travel by handle",
        },
        "A CUDA tensor in memory CUDA IPC cannot share was copied once to travel by handle.",
    ),
    EventSpec(
        CALL_FALLBACK,
        {"attempt": "number of the attempt about to run on the fallback device"},
        {
            "call_id": "the call",
            "pool": "pool name",
            "from_device": "device whose worker ran out of memory",
            "to_device": "device the call runs on instead (cpu)",
            "reason": "the OutOfMemoryError's message",
        },
        "An idempotent call ran out of GPU memory and runs again on the CPU (oom_fallback).",
    ),
    EventSpec(
        SERIALIZE_STOP,
        {"duration": "seconds", "bytes": "pickled payload size", "arrays": "arrays by reference"},
        {
            "direction": "encode or decode",
            "what": "arguments or result",
            "transport": "Ray backend only: shared-memory, ray-object or ray-inline "
            "(how the arguments reach the host; see docs/scale-out.md)",
        },
        "Arguments or a result were encoded or decoded by the codec (supervisor side).",
    ),
    EventSpec(
        HARDWARE_DETECTED,
        {"duration": "seconds the (uncached) detection took"},
        {
            "accelerator": "cuda, mps, rocm or cpu",
            "gpu_count": "GPUs found",
            "reasons": "why each absent backend is absent",
        },
        "snakepit.hardware.detect() ran (not when served from its cache).",
    ),
    EventSpec(
        DEVICE_SELECTED,
        {},
        {"requested": "what was asked for", "selected": "device chosen", "reason": "why"},
        "hardware.select / select_with_fallback chose a device.",
    ),
    EventSpec(
        DEVICE_UNAVAILABLE,
        {},
        {"requested": "what was asked for", "available": "devices present", "reason": "why"},
        "A requested device does not exist here (before falling back or raising).",
    ),
    EventSpec(
        ERROR,
        {},
        {
            "kind": "error class name",
            "message": "the error's message",
            "exception": "the error object",
            "call_id": "the call, when it came from one",
        },
        "A call's caller is about to receive a snakepit error.",
    ),
    EventSpec(
        ML_TENSOR_OP,
        {"duration": "seconds", "bytes": "bytes processed, if given"},
        {
            "op": "operation name",
            "shape": "shape, if given",
            "dtype": "dtype, if given",
            **_ML_WORKER,
        },
        "User code reported a tensor operation (snakepit.telemetry.tensor_op).",
    ),
    EventSpec(
        ML_INFERENCE,
        {
            "duration": "seconds",
            "batch_size": "inputs in the batch",
            "tokens": "tokens produced, if given",
            "tokens_per_second": "tokens / duration, when tokens were given",
        },
        {"model": "model name", **_ML_WORKER},
        "User code reported an inference (snakepit.telemetry.inference).",
    ),
    EventSpec(
        ML_TRAIN_STEP,
        {"duration": "seconds", "loss": "loss value, if given", "batch_size": "samples"},
        {"step": "step number", "model": "model name", **_ML_WORKER},
        "User code reported a training step (snakepit.telemetry.train_step).",
    ),
)

#: Every event name snakepit emits.
ALL_EVENTS: tuple[Event, ...] = tuple(spec.name for spec in CATALOGUE)
