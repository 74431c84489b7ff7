"""Sample GPU memory over NVML from a background thread.

The profiler asks NVML (the ``pynvml`` module of ``nvidia-ml-py``, in-process,
no ``nvidia-smi`` subprocess) for each GPU's memory every ``interval`` seconds,
keeps the last ``history`` rounds, tracks each device's peak and emits a
``("snakepit", "memory", "gpu")`` event per device per sample. Where there is
no NVML library or no GPU it does nothing: :attr:`GpuMemoryProfiler.available`
is ``False`` and :attr:`GpuMemoryProfiler.reason` says why.

NVML sees a device's memory as the driver does (every process's). Where a
process has imported torch and torch has used CUDA, its caching allocator
says how much of that is this process's tensors (``allocated``) and how much
it keeps cached (``reserved``): :func:`torch_memory`, sampled by the profiler
each round and by a worker after its calls (:func:`report_torch_memory`), as
``("snakepit", "memory", "torch")`` events. torch is never imported for it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from snakepit.telemetry._bus import enabled, execute
from snakepit.telemetry._events import MEMORY_GPU, MEMORY_TORCH

_log = logging.getLogger("snakepit.telemetry")


class NvmlLike(Protocol):
    """The part of ``pynvml`` the profiler uses (tests pass a double)."""

    def nvmlInit(self) -> None: ...  # noqa: N802 - NVML's names
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...  # noqa: N802
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # noqa: N802
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...  # noqa: N802


@dataclass(frozen=True, slots=True)
class GpuMemorySample:
    """One device's memory at one moment (bytes; ``time`` is ``time.time()``)."""

    time: float
    device: int
    name: str
    used: int
    free: int
    total: int


@dataclass(frozen=True, slots=True)
class TorchMemorySample:
    """torch's CUDA caching allocator on one device of this process (bytes)."""

    device: int
    allocated: int
    reserved: int


def torch_memory() -> list[TorchMemorySample]:
    """torch's allocated and reserved bytes per device, if this process has
    imported torch and torch has initialised CUDA; else an empty list."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return []
    try:
        if not cuda.is_initialized():
            return []
        return [
            TorchMemorySample(
                index, int(cuda.memory_allocated(index)), int(cuda.memory_reserved(index))
            )
            for index in range(int(cuda.device_count()))
        ]
    except Exception:  # a broken CUDA state must not break telemetry
        _log.debug("torch allocator sample failed", exc_info=True)
        return []


def emit_torch_memory(samples: list[TorchMemorySample]) -> None:
    """One ``("snakepit", "memory", "torch")`` event per sample."""
    for sample in samples:
        execute(
            MEMORY_TORCH,
            {"allocated": sample.allocated, "reserved": sample.reserved},
            {"device": f"cuda:{sample.device}"},
        )


#: A worker samples torch's allocator after a call at most this often (seconds).
TORCH_REPORT_SECONDS = 1.0
_last_torch_report = 0.0


def report_torch_memory(now: float | None = None) -> bool:
    """After a call in a worker: emit torch's allocator figures if torch is
    loaded and the last report is :data:`TORCH_REPORT_SECONDS` old; True if it did.
    A process without torch pays one dictionary lookup."""
    global _last_torch_report
    if "torch" not in sys.modules or not enabled(MEMORY_TORCH):
        return False
    moment = time.monotonic() if now is None else now
    if moment - _last_torch_report < TORCH_REPORT_SECONDS:
        return False
    _last_torch_report = moment
    samples = torch_memory()
    emit_torch_memory(samples)
    return bool(samples)


def _load_pynvml() -> Any:
    import pynvml

    return pynvml


def _name(raw: str | bytes) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class GpuMemoryProfiler:
    """Background sampler of GPU memory with bounded history.

    ``with GpuMemoryProfiler(interval=0.5) as profiler: ...`` then
    ``profiler.peak()``. Construction probes NVML once and never raises for
    a missing library or GPU.

    Args:
        interval: Seconds between samples.
        history: Sampling rounds kept (each round has one sample per device).
        nvml: The NVML module to use; ``pynvml`` by default.
    """

    def __init__(
        self, interval: float = 1.0, history: int = 600, nvml: NvmlLike | None = None
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, not {interval!r}")
        if history < 1:
            raise ValueError(f"history must be >= 1, not {history!r}")
        self.interval = float(interval)
        self.history = int(history)
        self._nvml: Any = nvml
        self._rounds: deque[tuple[GpuMemorySample, ...]] = deque(maxlen=self.history)
        self._peaks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles: list[tuple[int, Any, str]] = []
        self._warned = False
        #: Names of the GPUs found, by index.
        self.devices: dict[int, str] = {}
        #: Why the profiler is off, or ``None`` when it works.
        self.reason: str | None = None
        self._probe()

    @property
    def available(self) -> bool:
        """Whether NVML works here and sees at least one GPU."""
        return self.reason is None

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _probe(self) -> None:
        if self._nvml is None:
            try:
                self._nvml = _load_pynvml()
            except ImportError as exc:
                self.reason = f"pynvml (nvidia-ml-py) is not installed: {exc}"
                return
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded ...
            self.reason = f"NVML is not usable here: {_describe(exc)}"
            return
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            for index in range(count):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                self.devices[index] = _name(self._nvml.nvmlDeviceGetName(handle))
        except Exception as exc:
            self.reason = f"NVML could not list the GPUs: {_describe(exc)}"
            self.devices.clear()
            return
        finally:
            self._shutdown_nvml()
        if not self.devices:
            self.reason = "NVML found no GPU"

    def _shutdown_nvml(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            _log.debug("nvmlShutdown failed", exc_info=True)

    # ---------------------------------------------------------------- sampling

    def _open(self) -> None:
        self._nvml.nvmlInit()
        try:
            self._handles = [
                (index, self._nvml.nvmlDeviceGetHandleByIndex(index), name)
                for index, name in self.devices.items()
            ]
        except Exception:
            self._shutdown_nvml()
            raise

    def _close(self) -> None:
        self._handles = []
        self._shutdown_nvml()

    def _sample_round(self) -> tuple[GpuMemorySample, ...]:
        now = time.time()
        samples = []
        for index, handle, name in self._handles:
            try:
                info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:
                if not self._warned:
                    self._warned = True
                    _log.warning("could not read memory of GPU %d", index, exc_info=True)
                continue
            samples.append(
                GpuMemorySample(now, index, name, int(info.used), int(info.free), int(info.total))
            )
        result = tuple(samples)
        with self._lock:
            self._rounds.append(result)
            for sample in result:
                if sample.used > self._peaks.get(sample.device, -1):
                    self._peaks[sample.device] = sample.used
        if enabled(MEMORY_GPU):
            for sample in result:
                execute(
                    MEMORY_GPU,
                    {"used": sample.used, "free": sample.free, "total": sample.total},
                    {"device": sample.device, "name": sample.name},
                )
        if enabled(MEMORY_TORCH):
            emit_torch_memory(torch_memory())
        return result

    def _run(self) -> None:
        while True:
            try:
                self._sample_round()
            except Exception:  # never let the sampler thread die noisily
                _log.debug("GPU memory sample failed", exc_info=True)
            if self._stop.wait(self.interval):
                return

    def sample(self) -> list[GpuMemorySample]:
        """Take one sample of every GPU now (recorded like a background one).

        Returns an empty list when the profiler is not :attr:`available`.
        """
        if not self.available:
            return []
        if self.running:
            return list(self._sample_round())
        self._open()
        try:
            return list(self._sample_round())
        finally:
            self._close()

    # ----------------------------------------------------------------- control

    def start(self) -> GpuMemoryProfiler:
        """Start the sampling thread (a no-op when unavailable or running); returns ``self``."""
        if not self.available or self.running:
            return self
        self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="snakepit-gpu-profiler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the sampling thread and wait for it (a no-op when not running)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():  # stuck inside NVML: leave the library initialised
            _log.warning("GPU profiler thread did not stop within %s s", timeout)
            return
        self._thread = None
        self._close()

    def samples(self, device: int | None = None) -> list[GpuMemorySample]:
        """Samples kept in the history, oldest first (of one device, or all)."""
        with self._lock:
            rounds = list(self._rounds)
        return [s for r in rounds for s in r if device is None or s.device == device]

    def peak(self) -> dict[int, int]:
        """Highest ``used`` bytes seen per device since the profiler was made."""
        with self._lock:
            return dict(self._peaks)

    def __enter__(self) -> GpuMemoryProfiler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        if not self.available:
            state = f"unavailable: {self.reason}"
        return f"<GpuMemoryProfiler {len(self.devices)} GPUs, every {self.interval} s, {state}>"
